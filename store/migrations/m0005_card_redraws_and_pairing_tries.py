"""0005: which state an approval's cards last showed (so a decision made in another
process is redrawn on every app), and pairing attempts counted in the store
(per account, surviving restarts, taken with one conditional UPDATE)."""

import sqlalchemy as sa


def up(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE approval ADD COLUMN drawn_state VARCHAR NOT NULL DEFAULT 'pending'"))
    conn.execute(sa.text("UPDATE approval SET drawn_state = state"))
    m = sa.MetaData()
    sa.Table(
        "pairing_attempt", m,
        sa.Column("key", sa.String, primary_key=True),  # "<platform>:<user id>", or "*" for all accounts
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    )
    m.tables["pairing_attempt"].create(conn)
