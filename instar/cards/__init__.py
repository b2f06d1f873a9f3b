"""Cards: the Hugging Face dataset card and model cards."""
