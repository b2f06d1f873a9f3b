"""Text functions: Arabic normalisation and ratios, personal-data scrubbing, language
identification, repetition."""
