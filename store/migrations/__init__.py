"""Numbered schema migrations, recorded in the database (`schema_migration`).

Each migration is a module `mNNNN_name.py` with `up(conn)`. They are written with
SQLAlchemy Core against a frozen description of the schema at that step (never the
live SQLModel classes, which move on), so an old database upgrades in place to
exactly what a new one gets. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_meta = sa.MetaData()
schema_migration = sa.Table(
    "schema_migration",
    _meta,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def available() -> list[tuple[int, str, object]]:
    """All migrations shipped with this version, in order: (number, name, module)."""
    out = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("m") and info.name[1:5].isdigit():
            module = importlib.import_module(f"{__name__}.{info.name}")
            out.append((int(info.name[1:5]), info.name[6:], module))
    return sorted(out, key=lambda m: m[0])


def applied(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_migration"):
            return []
        return [row[0] for row in conn.execute(sa.select(schema_migration.c.version))]


def migrate(engine: Engine, upto: int | None = None) -> list[int]:
    """Apply every migration not yet recorded (up to `upto`); returns what ran.

    Each migration and its record commit together, so a crash mid-upgrade leaves
    the database at the previous version, not half-way.
    """
    with engine.begin() as conn:
        _lock(conn)
        _meta.create_all(conn)
    done = set(applied(engine))
    ran = []
    for number, name, module in available():
        if number in done or (upto is not None and number > upto):
            continue
        with engine.begin() as conn:
            _lock(conn)
            # Read again under the lock: another process starting at the same
            # moment may have applied it while we waited.
            if conn.execute(sa.select(schema_migration.c.version).where(
                schema_migration.c.version == number
            )).first():
                continue
            module.up(conn)  # type: ignore[attr-defined]
            conn.execute(
                schema_migration.insert().values(
                    version=number,
                    name=name,
                    applied_at=datetime.now(timezone.utc),
                )
            )
        ran.append(number)
    return ran


def _lock(conn: sa.Connection) -> None:
    """Open the transaction with SQLite's write lock held.

    pysqlite only starts a transaction before INSERT/UPDATE/DELETE, so without this
    a migration's CREATE/ALTER statements each commit on their own and a failure
    half-way leaves tables behind with the version unrecorded. Taking the lock up
    front (waiting out the busy timeout) also makes a second process that starts
    at the same moment wait, then see the work done, instead of failing on
    "table already exists". PostgreSQL runs DDL in the transaction already.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def latest() -> int:
    return available()[-1][0]
