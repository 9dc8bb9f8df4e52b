"""Command-line interface (``geoseg``); one module per command."""
