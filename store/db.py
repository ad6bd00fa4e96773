"""The engine and a few small helpers every layer uses.

SQLite by default (WAL so readers never wait for the writer, a busy timeout so two
processes — `dispatch chat` and a one-shot `dispatch approve` — queue instead of
failing). `DATABASE_URL` may point anywhere SQLAlchemy reaches.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from store import migrations
from store.models import Action, MemoryNote, Message, Setting, Task, Thread, utcnow

BUSY_TIMEOUT_MS = 10_000


def make_engine(url: str) -> Engine:
    # By the parsed URL, not its prefix: `sqlite+pysqlite:///...` or a `?query` must
    # get the same pragmas and folder as `sqlite:///...`.
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _set_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _set_wal(cur: Any) -> None:
    """Switch the file to WAL (it stays so). Converting a new file needs an exclusive
    lock, and SQLite reports "database is locked" at once instead of using the busy
    timeout, so two processes opening a new database together would fail: retry."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


IMAGE_TOKENS = 1_600  # a screenshot of up to ~1280x800 costs about (width * height) / 750 tokens


def estimate_tokens(content: Any) -> int:
    """About four characters a token: good enough to budget a context window. An image
    (a screenshot in a tool result) counts as what the model is billed for it, not as
    the length of its base64 text."""
    text = json.dumps(content, ensure_ascii=False)
    if '"image"' not in text:
        return len(text) // 4 + 1
    images = 0

    def strip(node: Any) -> Any:
        nonlocal images
        if isinstance(node, dict):
            if node.get("type") == "image":
                images += 1
                return {"type": "image"}
            return {k: strip(v) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return len(json.dumps(strip(content), ensure_ascii=False)) // 4 + 1 + images * IMAGE_TOKENS


class Store:
    """The database of one Dispatch installation."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            migrations.migrate(self.engine)
        parsed = sa.engine.make_url(url)
        file = parsed.database if parsed.get_backend_name() == "sqlite" else None
        self._file = file if file and file != ":memory:" and not file.startswith("file:") else None
        self._watch: sqlite3.Connection | None = None  # see changed()
        self._seen_version: int | None = None

    def changed(self) -> bool:
        """Whether anyone (this process or another) committed to the database since the
        last call. SQLite's `PRAGMA data_version`, read on a connection of its own, which
        sees every other connection's commits: the idle worker's once-a-second look costs
        microseconds instead of two queries. True on the first call, and always for a
        database that is not a SQLite file."""
        if self._file is None:
            return True
        try:
            if self._watch is None:
                self._watch = sqlite3.connect(self._file, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return True  # say "look": a missed look would be worse than a needless one
        seen, self._seen_version = self._seen_version, version
        return version != seen

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self.engine.dispose()

    # The thread ---------------------------------------------------------

    def thread_id(self) -> int:
        """The owner's one thread (made on first use)."""
        with self.session() as s:
            thread = s.exec(select(Thread).order_by(Thread.id)).first()
            if thread is None:
                thread = Thread()
                s.add(thread)
                s.commit()
            assert thread.id is not None
            return thread.id

    def append_message(
        self,
        thread_id: int,
        role: str,
        content: list[dict[str, Any]],
        *,
        kind: str = "turn",
        task_id: int | None = None,
        task_steps: int | None = None,
        tokens: int | None = None,
    ) -> Message:
        """Persist one turn of the thread (Anthropic content blocks, exactly).
        `task_steps` records the task's progress in the same commit. `tokens` is the
        turn's cost when the caller knows it better than `estimate_tokens` (a photo's
        size or a PDF's pages, agent.media)."""
        # Core inserts, not ORM sessions: these run several times per model step.
        row = Message(thread_id=thread_id, role=role, kind=kind, content=content,
                      tokens=estimate_tokens(content) if tokens is None else tokens, task_id=task_id)
        values = row.model_dump(exclude={"id"})
        with self.engine.begin() as conn:
            row.id = conn.execute(sa.insert(Message.__table__).values(**values)).inserted_primary_key[0]  # type: ignore[attr-defined]
            if task_steps is not None and task_id is not None:
                task = Task.__table__  # type: ignore[attr-defined]
                conn.execute(sa.update(task).where(task.c.id == task_id).values(steps=task_steps))
        return row

    # Audit log ----------------------------------------------------------

    def log(
        self,
        kind: str,
        summary: str,
        *,
        tool: str = "",
        task_id: int | None = None,
        ok: bool = True,
        **detail: Any,
    ) -> None:
        row = Action(kind=kind, summary=summary, tool=tool, task_id=task_id, ok=ok, detail=detail)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(Action.__table__).values(**row.model_dump(exclude={"id"})))  # type: ignore[attr-defined]

    def recent_actions(self, limit: int = 30, kinds: tuple[str, ...] | None = None) -> list[Action]:
        with self.session() as s:
            q = select(Action).order_by(Action.id.desc()).limit(limit)  # type: ignore[union-attr]
            if kinds:
                q = q.where(Action.kind.in_(kinds))  # type: ignore[attr-defined]
            return list(s.exec(q))

    # Settings -----------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        table = Setting.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:  # read on every model step: no ORM session
            row = conn.execute(sa.select(table.c.value).where(table.c.key == key)).first()
        return default if row is None else row[0]

    def set_setting(self, key: str, value: Any) -> None:
        with self.session() as s:
            row = s.get(Setting, key)
            if row is None:
                s.add(Setting(key=key, value=value))
            else:
                row.value = value
                row.updated_at = utcnow()
                s.add(row)
            s.commit()

    # Memory -------------------------------------------------------------

    def memory_notes(self) -> list[MemoryNote]:
        table = MemoryNote.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:  # read on every model step: no ORM session
            rows = conn.execute(sa.select(table).where(table.c.active).order_by(table.c.id)).mappings().all()
        return [MemoryNote(**row) for row in rows]
