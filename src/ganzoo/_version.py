"""ganzoo's version: one place, read by the package (``ganzoo.__version__``), saved folders and
evaluation protocols, and the build (``pyproject.toml``'s dynamic version)."""

__version__ = "0.2.0"
