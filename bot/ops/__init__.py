"""The `dispatch` command and operations: cli, run (every front end in one process), doctor, service."""
