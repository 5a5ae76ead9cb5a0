"""FastAPI dependencies shared by every domain's routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from o2o.accounts.service import live_session_user
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import Unauthorized
from o2o.merchants.access import Actor, load_actor
from o2o.security import TokenClaims, bearer_claims, revoked


# Cheap dependencies are ``async def`` so FastAPI runs them on the event loop: a plain ``def``
# would cost a worker-thread round trip each, on every request (measured on checkout).
async def get_database(request: Request) -> Database:
    return request.app.state.db


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


DbDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def write_session(db: DbDep) -> Iterator[Session]:
    """One transaction per request, committed (or rolled back) before the response is sent.

    Use it only through ``SessionDep``: its ``scope="function"`` is what makes FastAPI end the
    transaction when the route returns, before the response goes out. With FastAPI's default for
    ``yield`` dependencies ("request") the commit runs after the response has been sent: a client
    acting on the 201 could find nothing there, and a failed commit would follow a success.
    A commit that fails raises here, so the caller gets the error response (409/503/500), never
    the success. ``tests/test_transaction_scope.py`` checks every route and the order of events.
    """
    with db.transaction() as session:
        yield session


def read_session(db: DbDep) -> Iterator[Session]:
    """A read-only transaction, also ended before the response is sent (its connection goes
    back to the pool instead of waiting for a slow client)."""
    with db.transaction(readonly=True) as session:
        yield session


SessionDep = Annotated[Session, Depends(write_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(read_session, scope="function")]


ClaimsDep = Annotated[TokenClaims | None, Depends(bearer_claims)]


def _actor(db: Database, claims: TokenClaims) -> Actor:
    """The caller, if the token's session is live: the session check rides along with loading
    the user (one query), then the memberships."""
    with db.transaction(readonly=True) as session:
        live = live_session_user(session, claims.user_id, claims.session_id)
        if live is None:
            raise revoked()
        return load_actor(session, live[0])


def current_actor(db: DbDep, claims: ClaimsDep) -> Actor:
    if claims is None:
        raise Unauthorized("请先登录", headers={"WWW-Authenticate": "Bearer"})
    return _actor(db, claims)


def optional_actor(db: DbDep, claims: ClaimsDep) -> Actor | None:
    return None if claims is None else _actor(db, claims)


def admin_actor(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    actor.require_admin()
    return actor


ActorDep = Annotated[Actor, Depends(current_actor)]
OptionalActorDep = Annotated[Actor | None, Depends(optional_actor)]
AdminDep = Annotated[Actor, Depends(admin_actor)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
