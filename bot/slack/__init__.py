"""Slack front end: app (Socket Mode/HTTP, watchdog), handlers, cards (buttons, edit form), channel (rendering), format (mrkdwn)."""
