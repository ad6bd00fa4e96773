"""0006: memory notes record where they came from.

`source` is "owner" (made in a task that had read nothing the owner did not write)
or "approved" (the owner approved it on a card, required in a task that had read
files, mail or Slack: agent.gate); notes from before this migration are "unknown".
`task_id` is the task that made it, `approval_id` and `decided_by` the card and who
pressed it. (Schedules keep the same record in their job's stored arguments, see
tools.schedule, so the job table stays APScheduler's own.)
"""

import sqlalchemy as sa


def up(conn: sa.Connection) -> None:
    for ddl in (
        "ALTER TABLE memory_note ADD COLUMN source VARCHAR NOT NULL DEFAULT 'unknown'",
        "ALTER TABLE memory_note ADD COLUMN task_id INTEGER",
        "ALTER TABLE memory_note ADD COLUMN approval_id INTEGER",
        "ALTER TABLE memory_note ADD COLUMN decided_by VARCHAR NOT NULL DEFAULT ''",
    ):
        conn.execute(sa.text(ddl))
