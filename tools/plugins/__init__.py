"""Plugins: MCP servers (stdio and streamable HTTP) through the official `mcp` SDK.

config.py reads and writes the Claude-Desktop-format config; server.py runs one
server (start on first use, restart with back-off, timeouts, clean shutdown);
manager.py holds them all; elicit.py turns a server's questions into pending
decisions for the owner. tools/mcp.py turns their tools into registry tools.
"""
