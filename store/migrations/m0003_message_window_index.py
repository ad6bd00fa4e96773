"""0003: a covering index for choosing the context window.

The window is picked by walking message sizes newest-first; with (thread_id, id,
tokens, role, kind) in one index SQLite never touches the wide rows holding the
content, which took the 10,000-message build from ~25 ms to a few ms.
"""

import sqlalchemy as sa


def up(conn: sa.Connection) -> None:
    conn.execute(sa.text(
        "CREATE INDEX ix_message_window ON message (thread_id, id, tokens, role, kind)"
    ))
