"""The ``o2o`` command: serve, worker, db, admin, demo, reconcile."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from o2o import migrate, wiring
from o2o.config import get_settings
from o2o.registry import load_models

app = typer.Typer(help="O2O Platform: 平台电商 + 到店 O2O", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations)", no_args_is_help=True)
admin_app = typer.Typer(help="Platform operators", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")


@app.callback()
def _start() -> None:
    """Before every command: register every table (a command imports only what it uses) and
    wire the domain events' handlers (``o2o.wiring``)."""
    load_models()
    wiring.install()


def _logging() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _prepare_database(*, migrate_schema: bool) -> None:
    """Upgrade the schema (always for the embedded SQLite) and load demo data on first start."""
    settings = get_settings()
    if migrate_schema or settings.is_sqlite:
        migrate.upgrade(settings.database_url)
    elif migrate.current(settings.database_url) != migrate.head():
        typer.echo("数据库结构不是最新版本：请先运行 `o2o db upgrade`", err=True)
        raise typer.Exit(1)
    if settings.demo:
        from o2o import demo
        from o2o.db import Database

        db = Database.from_url(settings.database_url)
        try:
            if demo.load_on_first_start(db):
                typer.echo("已载入演示数据（账号见 README）")
        finally:
            db.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(help="API processes (use PostgreSQL for >1)")] = 1,
    migrate_schema: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="upgrade the schema first")
    ] = False,
) -> None:
    """Serve API + pages (+ the background worker unless O2O_EMBEDDED_WORKER=false)."""
    import uvicorn

    _logging()
    settings = get_settings()
    if workers > 1 and settings.is_sqlite:
        typer.echo(
            "SQLite 只支持单个写进程：多进程部署请使用 PostgreSQL（O2O_DATABASE_URL）", err=True
        )
        raise typer.Exit(2)
    _prepare_database(migrate_schema=migrate_schema)
    settings.resolved_secret_key()  # persist the generated key before processes fork
    typer.echo(f"O2O Platform 运行于 http://{host}:{port}  (数据库: {settings.database_url})")
    uvicorn.run(
        "o2o.app:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run the background timers alone (for multi-process deployments)."""
    from o2o.db import Database
    from o2o.worker import run_forever

    _logging()
    settings = get_settings()
    db = Database.from_url(settings.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        run_forever(db, settings, stop)
    finally:
        db.dispose()


def _revision() -> str:
    return migrate.current(get_settings().database_url) or "(空数据库)"


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    migrate.upgrade(get_settings().database_url, revision)
    typer.echo(f"当前版本: {_revision()}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, or base")] = "-1",
) -> None:
    """Downgrade the schema to REVISION (default: one step back)."""
    migrate.downgrade(get_settings().database_url, revision)
    typer.echo(f"当前版本: {_revision()}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the configured database."""
    typer.echo(_revision())


@admin_app.command("create")
def admin_create(
    phone: Annotated[str, typer.Option(help="mainland mobile number")],
    password: Annotated[str, typer.Option(help="at least 8 characters")],
    name: Annotated[str, typer.Option(help="display name")] = "平台运营",
) -> None:
    """Create a platform operator (or promote an existing user)."""
    from pydantic import ValidationError

    from o2o.accounts import service
    from o2o.accounts.schemas import RegisterIn
    from o2o.db import Database

    try:
        RegisterIn(phone=phone, password=password, name=name)
    except ValidationError as exc:
        typer.echo(f"输入无效: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    db = Database.from_url(get_settings().database_url)
    try:
        with db.transaction() as session:
            user = service.create_admin(session, phone=phone, password=password, name=name)
        typer.echo(f"平台运营账号已就绪: {user.phone} (id {user.id})")
    finally:
        db.dispose()


@app.command()
def demo() -> None:
    """Load demo data into the configured database (idempotent)."""
    from o2o import demo as demo_data
    from o2o.db import Database

    db = Database.from_url(get_settings().database_url)
    try:
        created = demo_data.load(db)
        typer.echo(f"演示数据已就绪（新建 {created} 条记录）")
    finally:
        db.dispose()


@app.command()
def reconcile(
    bill: Annotated[Path, typer.Argument(help="WeChat Pay trade bill CSV (交易账单)")],
    bill_date: Annotated[
        str | None, typer.Option("--date", help="bill day YYYY-MM-DD (default: from the rows)")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep/--no-keep", help="store the import for audit")
    ] = True,
) -> None:
    """Reconcile a WeChat Pay trade bill with our payments and refunds (exit 1 on mismatches)."""
    from datetime import date

    from o2o.db import Database
    from o2o.errors import AppError
    from o2o.settlement import reconciliation

    try:
        text = bill.read_bytes().decode("utf-8-sig")
        day = date.fromisoformat(bill_date) if bill_date else None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        typer.echo(f"无法读取账单: {exc}", err=True)
        raise typer.Exit(2) from exc
    db = Database.from_url(get_settings().database_url)
    try:
        with db.transaction() as session:
            report = reconciliation.reconcile(session, text, bill_date=day)
            if keep:
                reconciliation.store(session, report, text, actor_id=None, source="cli")
    except AppError as exc:
        typer.echo(f"账单无效: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    finally:
        db.dispose()
    typer.echo(reconciliation.format_table(report))
    raise typer.Exit(0 if report.ok else 1)


if __name__ == "__main__":
    app()
