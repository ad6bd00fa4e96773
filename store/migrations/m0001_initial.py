"""0001: the thread, its tasks, model usage, the audit log, memory and settings."""

import sqlalchemy as sa


def up(conn: sa.Connection) -> None:
    m = sa.MetaData()
    sa.Table(
        "owner_identity", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("platform", sa.String, nullable=False),
        sa.Column("user_id", sa.String, nullable=False),
        sa.Column("display_name", sa.String, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("platform", "user_id", name="uq_owner_platform_user"),
    )
    sa.Table(
        "thread", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("summary_upto", sa.Integer, nullable=False, server_default="0"),
    )
    sa.Table(
        "task", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("thread_id", sa.Integer, sa.ForeignKey("thread.id"), nullable=False, index=True),
        sa.Column("origin", sa.String, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("steps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    sa.Table(
        "message", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("thread_id", sa.Integer, sa.ForeignKey("thread.id"), nullable=False, index=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("task.id")),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False, server_default="turn"),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "model_call", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("task.id"), index=True),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("purpose", sa.String, nullable=False, server_default="turn"),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cache_creation_input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cache_read_input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("stop_reason", sa.String, nullable=False, server_default=""),
        sa.Column("duration_ms", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    sa.Table(
        "action", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("task_id", sa.Integer),
        sa.Column("tool", sa.String, nullable=False, server_default=""),
        sa.Column("ok", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    sa.Table(
        "memory_note", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "setting", m,
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.JSON),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    m.create_all(conn)
