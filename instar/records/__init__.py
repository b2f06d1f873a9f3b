"""Records: the one schema, its readers and writers, and where each stage keeps its files."""
