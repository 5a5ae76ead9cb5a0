"""评价: reviews after consumption, merchant replies, and rating aggregates."""
