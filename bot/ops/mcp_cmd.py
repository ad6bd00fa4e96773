"""`dispatch mcp list|add|remove|test`: the plugin config from the desktop.

    dispatch mcp list
    dispatch mcp add notes -- npx -y @some/notes-server --root ~/Notes
    dispatch mcp add notes --env NOTES_TOKEN='${NOTES_TOKEN}' -- notes-server
    dispatch mcp add github https://api.example.com/mcp --header 'Authorization: Bearer ${GH_TOKEN}'
    dispatch mcp remove notes
    dispatch mcp test notes

Values of env and headers are never printed (they are often tokens); `${VAR}` keeps a
token out of the file, read from the environment when the server starts. A running
Dispatch reads the config when it starts: restart it after a change.
"""

from __future__ import annotations

import argparse
import asyncio

from store.config import Settings


def run(settings: Settings, args: argparse.Namespace) -> int:
    return {"list": cmd_list, "add": cmd_add, "remove": cmd_remove, "test": cmd_test}[args.mcp_command](settings, args)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from agent import gate
    from store.db import Store
    from tools.plugins import config

    specs, problems = config.load(settings.mcp_config)
    if not specs and not problems:
        print(f"No plugins configured ({settings.mcp_config}). Add one with `dispatch mcp add NAME -- COMMAND ...`.")
        return 0
    policies = gate.current_policies(Store(settings.db_url), settings.policy_overrides)
    print(f"Plugins in {settings.mcp_config}:")
    for name, spec in sorted(specs.items()):
        policy = policies.get(f"mcp:{name}", "default: read-only tools auto, others ask")
        print(f"  {name}  [{spec.transport}]  {spec.describe()}  — policy {policy}")
    for problem in problems:
        print(f"  ✗ {problem}")
    return 1 if problems else 0


def _pairs(items: list[str], sep: str, what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise SystemExit(f"{what} {item!r}: expected KEY{sep}VALUE")
        out[key.strip()] = value.strip() if sep == ":" else value
    return out


def _split_options(args: argparse.Namespace) -> list[str]:
    """The URL or command. Options may also follow NAME (argparse leaves them in the
    remainder); everything after `--` belongs to the command, untouched."""
    target: list[str] = []
    rest = list(args.target)
    while rest:
        item = rest.pop(0)
        if item == "--":
            return target + rest
        if item in ("--env", "--header") and rest:
            getattr(args, item[2:]).append(rest.pop(0))
        elif item == "--replace":
            args.replace = True
        else:
            target.append(item)
    return target


def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    from tools.plugins import config

    target = _split_options(args)
    if not target:
        print("Give a URL (dispatch mcp add NAME https://host/mcp) or a command "
              "(dispatch mcp add NAME -- npx -y some-server).")
        return 2
    entry: dict = ({"url": target[0], "headers": _pairs(args.header, ":", "header")}
                   if target[0].startswith(("http://", "https://")) and len(target) == 1
                   else {"command": target[0], "args": target[1:], "env": _pairs(args.env, "=", "env")})
    try:
        spec = config.parse_server(args.name, entry)
        config.add(settings.mcp_config, spec, replace=args.replace)
    except config.ConfigError as exc:
        print(f"Not added: {exc}")
        return 2
    print(f"Added plugin {spec.name}: {spec.describe()}\nTry it: dispatch mcp test {spec.name}  "
          "(a running Dispatch picks it up when restarted)")
    return 0


def cmd_remove(settings: Settings, args: argparse.Namespace) -> int:
    from tools.plugins import config

    try:
        removed = config.remove(settings.mcp_config, args.name)
    except config.ConfigError as exc:
        print(f"Not removed: {exc}")
        return 2
    print(f"Removed plugin {args.name}." if removed else f"There is no plugin called {args.name}.")
    return 0 if removed else 1


def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    from tools.mcp import check_server

    ok, summary, tools = asyncio.run(check_server(settings, args.name))
    print(f"{args.name}: {summary}" if ok else f"{args.name}: ✗ {summary}")
    for name, effect in tools:
        print(f"  {name}  ({'runs at once' if effect == 'read' else 'needs your approval: ' + effect})")
    return 0 if ok else 1
