"""The transactional outbox: after-commit deliveries of domain events (``o2o.events``)."""
