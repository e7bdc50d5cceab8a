"""nm-obs-dataset: OBS recordings + input logs -> frame-aligned datasets."""
__version__ = "0.1.0"
