"""O2O Platform: platform e-commerce and O2O local services on one checkout."""

__version__ = "0.1.0"
