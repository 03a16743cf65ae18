"""The package version: a leaf module every layer may import (``hubkit.__version__`` re-exports it)."""

__version__ = "0.1.0"
