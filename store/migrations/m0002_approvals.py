"""0002: the approval gate — drafts waiting for the owner, and task kinds
(a rejection with a reason queues a `revision` task)."""

import sqlalchemy as sa


def up(conn: sa.Connection) -> None:
    m = sa.MetaData()
    sa.Table("thread", m, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("task", m, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "approval", m,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task_id", sa.Integer, sa.ForeignKey("task.id")),
        sa.Column("thread_id", sa.Integer, sa.ForeignKey("thread.id"), nullable=False),
        sa.Column("origin", sa.String, nullable=False, server_default=""),
        sa.Column("tool", sa.String, nullable=False),
        sa.Column("connector", sa.String, nullable=False, server_default=""),
        sa.Column("tool_use_id", sa.String, nullable=False, server_default=""),
        sa.Column("args_json", sa.Text, nullable=False),
        sa.Column("args_sha256", sa.String(64), nullable=False),
        sa.Column("preview", sa.Text, nullable=False),
        sa.Column("state", sa.String, nullable=False, index=True),
        sa.Column("revision_of", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("decided_by", sa.String, nullable=False, server_default=""),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text, nullable=False, server_default=""),
        sa.Column("cards", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    m.tables["approval"].create(conn)
    conn.execute(sa.text("ALTER TABLE task ADD COLUMN kind VARCHAR NOT NULL DEFAULT 'owner'"))
