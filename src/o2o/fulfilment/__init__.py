"""履约: vouchers redeemed at the store (核销) for services; shipments and after-sales for goods.

Vouchers: ``models`` (tables), ``vouchers`` (issuing, 随时退, 过期自动退, order completion),
``redemption`` (preview, redeem, undo — the hot path), ``api``, ``jobs``, ``demo``.
"""
