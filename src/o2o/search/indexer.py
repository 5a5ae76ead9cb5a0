"""Keeps the search index current. The catalogue, merchants and stores call these hooks inside
their own transactions whenever something a consumer could search for changes."""

from __future__ import annotations

from sqlalchemy.orm import Session


def listing_changed(session: Session, listing_id: int) -> None:
    """A listing was created, edited, published or unpublished."""


def merchant_changed(session: Session, merchant_id: int) -> None:
    """A merchant was approved, suspended or renamed."""


def store_changed(session: Session, store_id: int) -> None:
    """A store moved, was renamed, opened or closed."""
