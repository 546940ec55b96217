"""The package version, in a module of its own so that any layer can record it (saved models, reports)."""

__version__ = "0.1.0"
