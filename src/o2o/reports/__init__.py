"""Reports: channel conversion, O2O vs e-commerce per category and merchant, a merchant's days."""
