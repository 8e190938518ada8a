"""The package's version (also in pyproject.toml): read by the model cards without importing the package."""

__version__ = "0.1.0"
