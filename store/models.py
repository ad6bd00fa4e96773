"""The tables. The schema itself is created and upgraded by `store.migrations`;
these classes must match what the migrations build (a test checks that).

Times are timezone-aware UTC datetimes throughout; front ends convert for display.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class OwnerIdentity(SQLModel, table=True):
    """A chat account that is the owner: (platform, user id). Only these are obeyed."""

    __tablename__ = "owner_identity"
    id: Optional[int] = Field(default=None, primary_key=True)
    platform: str  # telegram | slack | console
    user_id: str
    display_name: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Thread(SQLModel, table=True):
    """The owner's single persistent conversation, shared by every front end."""

    __tablename__ = "thread"
    id: Optional[int] = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Running summary of everything up to and including message `summary_upto`.
    summary: str = ""
    summary_upto: int = 0


class Message(SQLModel, table=True):
    """One turn of the thread, stored as Anthropic content blocks so it replays exactly."""

    __tablename__ = "message"
    # Covers the newest-first walk that picks the context window (migration 0003).
    __table_args__ = (Index("ix_message_window", "thread_id", "id", "tokens", "role", "kind"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    thread_id: int = Field(foreign_key="thread.id", index=True)
    task_id: Optional[int] = Field(default=None, foreign_key="task.id")
    role: str  # user | assistant
    kind: str = "turn"  # turn | event (a decision, a notice) | tool_results
    content: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    tokens: int = 0  # rough size, so the context window is chosen without loading content
    created_at: datetime = Field(default_factory=utcnow)


class Task(SQLModel, table=True):
    """A piece of work on the thread. The queue is this table: state='queued', by id."""

    __tablename__ = "task"
    id: Optional[int] = Field(default=None, primary_key=True)
    thread_id: int = Field(foreign_key="thread.id", index=True)
    origin: str  # where replies go, e.g. console:local, telegram:<chat id>
    text: str
    files: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    kind: str = "owner"  # owner | revision | schedule | notice
    state: str = "queued"  # queued | running | done | failed | cancelled | interrupted | refused
    steps: int = 0
    error: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


class ModelCall(SQLModel, table=True):
    """One Messages API call and what it cost."""

    __tablename__ = "model_call"
    id: Optional[int] = Field(default=None, primary_key=True)
    task_id: Optional[int] = Field(default=None, foreign_key="task.id", index=True)
    model: str
    purpose: str = "turn"  # turn | summary
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    stop_reason: str = ""
    duration_ms: int = 0
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Approval(SQLModel, table=True):
    """A draft of an outgoing action waiting for (or past) the owner's decision.

    States: pending -> approved -> sending -> sent | failed; pending -> rejected |
    expired | superseded; sending -> unknown after a crash. Every transition is a
    conditional UPDATE in agent.approvals.
    """

    __tablename__ = "approval"
    id: Optional[int] = Field(default=None, primary_key=True)
    task_id: Optional[int] = Field(default=None, foreign_key="task.id")
    thread_id: int = Field(foreign_key="thread.id")
    origin: str = ""
    tool: str
    connector: str = ""
    tool_use_id: str = ""
    args_json: str  # canonical JSON of the exact arguments that will run
    args_sha256: str
    preview: str
    state: str = Field(default="pending", index=True)
    revision_of: Optional[int] = None
    reason: str = ""  # the owner's reason for a rejection
    decided_by: str = ""
    decided_at: Optional[datetime] = None
    outcome: str = ""
    cards: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: Optional[datetime] = None
    # The state its cards last showed; differs from `state` until every copy is redrawn.
    drawn_state: str = "pending"


class PairingAttempt(SQLModel, table=True):
    """Pairing codes tried, per account ("telegram:42") and in total ("*"), in a window."""

    __tablename__ = "pairing_attempt"
    key: str = Field(primary_key=True)
    tries: int = 0
    window_start: datetime = Field(default_factory=utcnow)


class Action(SQLModel, table=True):
    """The audit log: every tool run, file sent, send, refusal and decision."""

    __tablename__ = "action"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    kind: str  # tool | send | file_sent | refusal | decision | policy | notice
    task_id: Optional[int] = None
    tool: str = ""
    ok: bool = True
    summary: str = ""
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class MemoryNote(SQLModel, table=True):
    """A durable fact the agent chose to remember; shown in every system prompt."""

    __tablename__ = "memory_note"
    id: Optional[int] = Field(default=None, primary_key=True)
    text: str
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    # Where it came from (migration 0005): owner | approved | unknown (made before 0005).
    source: str = "unknown"
    task_id: Optional[int] = None
    approval_id: Optional[int] = None
    decided_by: str = ""


class Setting(SQLModel, table=True):
    """Owner-changeable settings (connector policies, ...), as JSON values."""

    __tablename__ = "setting"
    key: str = Field(primary_key=True)
    value: Any = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)
