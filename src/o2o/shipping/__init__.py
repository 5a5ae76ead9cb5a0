"""Goods fulfilment: shipments with tracking (发货/物流), receipt, after-sales (售后)."""
