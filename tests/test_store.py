"""The store: migrations build exactly what the SQLModel classes describe, an old
database upgrades in place, SQLite runs in WAL with a busy timeout so two processes
share it, and the settings that lead to it say clearly what is wrong."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from store import migrations
from store.config import Settings
from store.db import BUSY_TIMEOUT_MS, Store, make_engine
from store.models import (
    Action,
    Approval,
    MemoryNote,
    Message,
    ModelCall,
    OwnerIdentity,
    PairingAttempt,
    Setting,
    Task,
    Thread,
    utcnow,
)

TABLE_CLASSES = [OwnerIdentity, Thread, Message, Task, ModelCall, Approval, Action, MemoryNote, Setting, PairingAttempt]
API_KEY = "sk-ant-api03-very-secret-value"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = dict(DISPATCH_HOME=str(tmp_path / "home"), ANTHROPIC_API_KEY=API_KEY)
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(sqlite_url(tmp_path / "db" / "dispatch.db"))
    yield s
    s.close()


# 1. A fresh database ----------------------------------------------------------------


def test_fresh_database_records_every_migration(store: Store) -> None:
    shipped = [number for number, _, _ in migrations.available()]
    assert shipped == list(range(1, migrations.latest() + 1)), "migrations are numbered 1..N without gaps"
    assert migrations.latest() >= 2
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(migrations.schema_migration.c.version, migrations.schema_migration.c.name)
            .order_by(migrations.schema_migration.c.version)
        ).all()
    assert [r.version for r in rows] == shipped
    assert [r.name for r in rows][:2] == ["initial", "approvals"]
    assert migrations.applied(store.engine) == shipped
    # Opening it again applies nothing.
    assert migrations.migrate(store.engine) == []


def _family(type_: sa.types.TypeEngine) -> str:
    """A column type reduced to what matters across dialects (TEXT and VARCHAR are both text)."""
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    for cls, name in (
        (sa.Boolean, "bool"), (sa.Integer, "int"), (sa.Float, "float"), (sa.DateTime, "datetime"),
        (sa.JSON, "json"), (sa.String, "text"),
    ):
        if isinstance(type_, cls):
            return name
    return type(type_).__name__


@pytest.mark.parametrize("model", TABLE_CLASSES, ids=lambda m: m.__name__)
def test_migrations_build_exactly_the_model_tables(store: Store, model: Any) -> None:
    table = model.__table__
    insp = sa.inspect(store.engine)
    assert insp.has_table(table.name)
    built = {c["name"]: c for c in insp.get_columns(table.name)}
    assert set(built) == {c.name for c in table.columns}, f"{table.name}: migrations and model disagree"
    pk = set(insp.get_pk_constraint(table.name)["constrained_columns"])
    assert pk == {c.name for c in table.primary_key.columns}
    for col in table.columns:
        got = built[col.name]
        assert _family(got["type"]) == _family(col.type), f"{table.name}.{col.name} type"
        if not col.primary_key:
            assert got["nullable"] == col.nullable, f"{table.name}.{col.name} nullability"
    fks = {(fk["constrained_columns"][0], fk["referred_table"]) for fk in insp.get_foreign_keys(table.name)}
    assert fks == {(fk.parent.name, fk.column.table.name) for fk in table.foreign_keys}
    indexes = {tuple(i["column_names"]) for i in insp.get_indexes(table.name)}
    assert indexes == {tuple(c.name for c in i.columns) for i in table.indexes}


def test_every_table_class_is_checked() -> None:
    # A new table class must be added to TABLE_CLASSES (and get a migration).
    import store.models as models
    from sqlmodel import SQLModel

    defined = {
        obj for obj in vars(models).values()
        if isinstance(obj, type) and issubclass(obj, SQLModel) and hasattr(obj, "__table__")
    }
    assert defined == set(TABLE_CLASSES)


def test_rows_round_trip_with_json_and_aware_utc_times(store: Store) -> None:
    tid = store.thread_id()
    assert store.thread_id() == tid, "one thread per owner"
    content = [{"type": "text", "text": "Grüße — ünïcode"}, {"type": "tool_use", "id": "t1", "name": "x", "input": {}}]
    msg = store.append_message(tid, "user", content)
    store.log("tool", "read a file", tool="read_text", path="/x")
    store.set_setting("policy", {"email": "ask"})
    store.set_setting("policy", {"email": "off"})
    berlin_noon = datetime(2030, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with store.session() as s:
        s.add(Approval(thread_id=tid, tool="send_email", args_json="{}", args_sha256="0" * 64,
                       preview="To: a", expires_at=berlin_noon))
        s.commit()
    with store.session() as s:
        got = s.get(Message, msg.id)
        approval = s.exec(select(Approval)).one()
    assert got is not None and got.content == content and got.tokens > 0
    assert store.get_setting("policy") == {"email": "off"}
    assert store.get_setting("missing", "dflt") == "dflt"
    action = store.recent_actions(5)[0]
    assert (action.kind, action.tool, action.detail) == ("tool", "read_text", {"path": "/x"})
    # Times come back aware and in UTC, so `expires_at < utcnow()` never mixes naive and aware.
    assert approval.expires_at == berlin_noon
    assert approval.expires_at.utcoffset() == timedelta(0)
    assert approval.created_at.tzinfo is not None and approval.created_at <= utcnow()


# 2. Upgrade in place ----------------------------------------------------------------


def _version_one_database(path: Path) -> sa.Engine:
    engine = make_engine(sqlite_url(path))
    assert migrations.migrate(engine, upto=1) == [1]
    insp = sa.inspect(engine)
    assert "kind" not in {c["name"] for c in insp.get_columns("task")}
    assert not insp.has_table("approval")
    return engine


def test_old_database_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = _version_one_database(path)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO thread (id, created_at, summary, summary_upto) "
            "VALUES (1, '2024-01-02 03:04:05.000000', 'earlier talk', 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO task (id, thread_id, origin, text, files, state, created_at) "
            "VALUES (7, 1, 'telegram:42', 'sum up the invoices', '[\"inv.pdf\"]', 'done', "
            "'2024-01-02 03:05:00.000000')"
        )
        conn.exec_driver_sql(
            "INSERT INTO message (thread_id, task_id, role, content, created_at) "
            "VALUES (1, 7, 'user', '[{\"type\": \"text\", \"text\": \"hi\"}]', '2024-01-02 03:05:00.000000')"
        )
        conn.exec_driver_sql(
            "INSERT INTO action (at, kind, task_id, summary, detail) "
            "VALUES ('2024-01-02 03:06:00.000000', 'tool', 7, 'listed a folder', '{\"n\": 3}')"
        )
    engine.dispose()

    store = Store(sqlite_url(path))
    try:
        assert migrations.applied(store.engine) == list(range(1, migrations.latest() + 1))
        with store.session() as s:
            thread = s.get(Thread, 1)
            task = s.get(Task, 7)
            message = s.exec(select(Message)).one()
            action = s.exec(select(Action)).one()
        assert thread is not None and thread.summary == "earlier talk"
        assert thread.created_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        assert task is not None
        assert (task.kind, task.state, task.origin, task.files) == ("owner", "done", "telegram:42", ["inv.pdf"])
        assert (message.task_id, message.kind, message.content) == (7, "turn", [{"type": "text", "text": "hi"}])
        assert (action.ok, action.tool, action.detail) == (True, "", {"n": 3})
        assert store.thread_id() == 1, "the old thread is still the owner's thread"

        # The new table works, tied to the old rows.
        with store.session() as s:
            s.add(Approval(task_id=7, thread_id=1, tool="send_email", args_json='{"to": "a@b.c"}',
                           args_sha256="f" * 64, preview="To: a@b.c"))
            s.add(Task(thread_id=1, origin="console:local", text="revise", kind="revision"))
            s.commit()
        with store.session() as s:
            approval = s.exec(select(Approval)).one()
            kinds = sorted(t.kind for t in s.exec(select(Task)))
        assert (approval.state, approval.task_id, approval.cards) == ("pending", 7, [])
        assert kinds == ["owner", "revision"]
        assert migrations.migrate(store.engine) == []
    finally:
        store.close()


def test_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    """A migration and its record commit together: a failure half-way through 0002
    (here: someone already added task.kind by hand) must not leave `approval` behind."""
    path = tmp_path / "hand-edited.db"
    engine = _version_one_database(path)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE task ADD COLUMN kind VARCHAR")
    with pytest.raises(sa.exc.OperationalError, match="duplicate column"):
        migrations.migrate(engine)
    assert migrations.applied(engine) == [1]
    assert not sa.inspect(engine).has_table("approval"), "0002 was half applied"
    # Once the cause is fixed, the same migration runs cleanly.
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE task DROP COLUMN kind")
    assert migrations.migrate(engine) == list(range(2, migrations.latest() + 1))
    assert sa.inspect(engine).has_table("approval")
    engine.dispose()


# 3. SQLite pragmas ------------------------------------------------------------------


def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(store: Store) -> None:
    assert BUSY_TIMEOUT_MS >= 1000, "long enough for the other process to finish a write"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # Foreign keys are enforced, not just declared.
    with pytest.raises(sa.exc.IntegrityError):
        store.append_message(9999, "user", [{"type": "text", "text": "orphan"}])


def test_sqlite_url_variants_get_the_same_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+pysqlite:///{tmp_path / 'nested' / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "nested" / "x.db").exists(), "the folder is made for the file"
    engine.dispose()


def test_changed_sees_every_commit_and_nothing_else(store: Store, tmp_path: Path) -> None:
    """The idle worker looks for work only after a commit: its own, or another process's
    (a second Store on the same file stands in for `dispatch approve N`)."""
    assert store.changed() is True, "the first look always looks"
    assert store.changed() is False
    with store.session() as s:  # a read commits nothing
        s.exec(select(Thread)).all()
    assert store.changed() is False
    other = Store(sqlite_url(tmp_path / "db" / "dispatch.db"))
    try:
        other.thread_id()  # makes the thread: a commit elsewhere
        assert store.changed() is True
        assert store.changed() is False
        store.append_message(store.thread_id(), "user", [{"type": "text", "text": "hi"}])  # our own commit
        assert store.changed() is True
    finally:
        other.close()


def test_changed_always_looks_where_it_cannot_tell(tmp_path: Path) -> None:
    memory = Store("sqlite://")
    assert [memory.changed(), memory.changed()] == [True, True]
    memory.close()


# 4. DATABASE_URL --------------------------------------------------------------------


def test_database_url_is_honoured(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "other.db"
    settings = settings_for(tmp_path, DATABASE_URL=sqlite_url(other))
    assert settings.db_url == sqlite_url(other)
    store = Store(settings.db_url)
    try:
        store.set_setting("k", 1)
    finally:
        store.close()
    assert other.is_file()
    assert not (settings.home / "dispatch.db").exists()


def test_default_database_lives_in_dispatch_home(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert settings.database_url is None
    assert settings.db_url == f"sqlite:///{tmp_path / 'home' / 'dispatch.db'}"
    store = Store(settings.db_url)
    store.close()
    assert (tmp_path / "home" / "dispatch.db").is_file()


def test_database_url_from_environment_and_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'from-file.db'}\nDISPATCH_HOME={tmp_path}\n")
    assert Settings(_env_file=env_file).db_url == f"sqlite:///{tmp_path / 'from-file.db'}"  # type: ignore[call-arg]
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    # The environment wins over .env.
    assert Settings(_env_file=env_file).db_url == f"sqlite:///{tmp_path / 'from-env.db'}"  # type: ignore[call-arg]


# 5. Two processes' worth ------------------------------------------------------------


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "shared.db")
    first, second = Store(url), Store(url)
    try:
        tid = first.thread_id()
        assert second.thread_id() == tid
        first.set_setting("policy.email", "ask")
        assert second.get_setting("policy.email") == "ask"
        second.append_message(tid, "user", [{"type": "text", "text": "from the other process"}])
        with first.session() as s:
            texts = [m.content[0]["text"] for m in s.exec(select(Message))]
        assert texts == ["from the other process"]
    finally:
        first.close()
        second.close()


def test_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "busy.db")
    stores = [Store(url), Store(url)]
    writers, per_writer = 6, 25
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        store = stores[n % 2]
        start.wait()
        try:
            for i in range(per_writer):
                store.log("tool", f"writer {n} step {i}")
                store.set_setting(f"counter.{n}", i)
                with store.session() as s:
                    s.add(MemoryNote(text=f"{n}-{i}"))
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors, f"concurrent writes failed: {errors[:3]!r}"
        assert len(stores[0].recent_actions(limit=10_000)) == writers * per_writer
        assert len(stores[1].memory_notes()) == writers * per_writer
        assert all(stores[0].get_setting(f"counter.{n}") == per_writer - 1 for n in range(writers))
    finally:
        for s in stores:
            s.close()


def test_processes_opening_a_new_database_together_all_succeed(tmp_path: Path) -> None:
    """`dispatch chat` and `dispatch approve` started at once on a first run: one
    creates the schema, the others wait and find it done."""
    for attempt in range(5):
        url = sqlite_url(tmp_path / f"race{attempt}.db")
        errors: list[BaseException] = []
        opened: list[Store] = []
        start = threading.Barrier(5)

        def open_store() -> None:
            start.wait()
            try:
                opened.append(Store(url))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for s in opened:
            s.close()
        assert not errors, f"attempt {attempt}: {errors[:2]!r}"
        engine = make_engine(url)
        assert migrations.applied(engine) == list(range(1, migrations.latest() + 1))
        engine.dispose()


# 6. Settings.problems ---------------------------------------------------------------


def test_good_configuration_has_no_problems(tmp_path: Path) -> None:
    root = tmp_path / "Documents"
    root.mkdir()
    settings = settings_for(
        tmp_path, DISPATCH_ROOTS=str(root), DISPATCH_TIMEZONE="Europe/Berlin",
        DISPATCH_POLICY="email=ask, files=AUTO,computer=off",
    )
    assert settings.problems() == []
    assert settings.roots == [root.resolve()]
    assert str(settings.tz) == "Europe/Berlin"
    assert settings.policy_overrides == {"email": "ask", "files": "auto", "computer": "off"}


def test_missing_api_key_is_named(tmp_path: Path) -> None:
    for blank in ({}, {"ANTHROPIC_API_KEY": ""}):
        settings = Settings(_env_file=None, DISPATCH_HOME=str(tmp_path), **blank)  # type: ignore[call-arg]
        problems = settings.problems()
        assert len(problems) == 1
        assert "ANTHROPIC_API_KEY" in problems[0] and "not set" in problems[0]


def test_root_that_is_not_a_folder_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    missing = tmp_path / "nowhere"
    settings = settings_for(tmp_path, DISPATCH_ROOTS=os.pathsep.join([str(good), str(a_file), str(missing)]))
    problems = settings.problems()
    assert len(problems) == 2
    assert any(str(a_file) in p and "DISPATCH_ROOTS" in p for p in problems)
    assert any(str(missing) in p for p in problems)
    assert not any(f"{good}," in p for p in problems)


def test_bad_timezone_is_named(tmp_path: Path) -> None:
    for bad in ("Mars/Olympus_Mons", "../etc/passwd"):
        problems = settings_for(tmp_path, DISPATCH_TIMEZONE=bad).problems()
        assert len(problems) == 1 and "DISPATCH_TIMEZONE" in problems[0] and bad in problems[0]
    # Blank means "the computer's zone", not an error.
    assert settings_for(tmp_path, DISPATCH_TIMEZONE="  ").problems() == []


def test_bad_policy_is_named(tmp_path: Path) -> None:
    problems = settings_for(tmp_path, DISPATCH_POLICY="email=sometimes,files=auto").problems()
    assert len(problems) == 1
    assert "DISPATCH_POLICY" in problems[0] and "email=sometimes" in problems[0]
    # An item without "=" would otherwise be dropped silently.
    problems = settings_for(tmp_path, DISPATCH_POLICY="email:ask").problems()
    assert len(problems) == 1 and "DISPATCH_POLICY" in problems[0] and "email:ask" in problems[0]


def test_secrets_stay_out_of_repr_and_str(tmp_path: Path) -> None:
    db_password = "pg-Pa55word-xyz"
    settings = settings_for(tmp_path, DATABASE_URL=f"postgresql://dispatch:{db_password}@db.local/dispatch")
    for text in (repr(settings), str(settings), repr(settings.anthropic_api_key)):
        assert API_KEY not in text
        assert db_password not in text
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == API_KEY
    assert db_password in settings.db_url, "the URL itself is still usable"
