"""The package's version: one place, read by hatch (pyproject.toml) and the code."""

__version__ = "1.0.0"
