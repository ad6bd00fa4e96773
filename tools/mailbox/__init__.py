"""Mail internals: the account and its IMAP/SMTP sessions, composing, and reading message text."""
