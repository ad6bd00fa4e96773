"""Telegram front end: app (polling, watchdog), handlers, channel (rendering), format (Markdown -> HTML)."""
