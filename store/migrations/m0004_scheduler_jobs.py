"""0004: the scheduler's job table, in the same database as everything else.

This is APScheduler 3's SQLAlchemyJobStore table, frozen as that version defines
it (it would create the table itself; it is made here so the schema stays the
migrations' business and upgrades are explicit). `job_state` is APScheduler's
pickled job: the trigger and the reference `agent.scheduler:fire` with plain
keyword arguments (schedule id, text, origin), never our own objects.
"""

import sqlalchemy as sa


def up(conn: sa.Connection) -> None:
    m = sa.MetaData()
    sa.Table(
        "apscheduler_jobs", m,
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), index=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
    m.create_all(conn, checkfirst=True)  # checkfirst: a table APScheduler already made is kept
