"""Deep raster classifiers (torch): models, losses, training and its modes, tiled inference, model files."""
