"""履约 for services: vouchers redeemed at the store (核销). (Goods: ``o2o.shipping``.)

Vouchers: ``models`` (tables), ``vouchers`` (issuing, 随时退, 过期自动退, order completion),
``redemption`` (preview, redeem, undo — the hot path), ``api``, ``jobs``, ``demo``.
"""
