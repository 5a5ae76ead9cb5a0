"""Checkout and orders: one checkout creates one order per merchant and kind, paid by one payment."""
