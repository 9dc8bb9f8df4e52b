"""Road classifiers applied to whole scenes (bands, normalisation, model files)."""
