"""The gate: the one place that decides what happens to a tool call.

Policy is `auto` (run), `ask` (make a draft and wait for the owner) or `off`
(the model is not even offered the tool). It is set per connector and may be
narrowed per tool — a per-tool setting can make a tool stricter than its
connector, never looser, so "email: ask" can't be undone by one stray tool entry.
A tool may also carry its own floor (`Tool.min_policy`, e.g. a plugin tool declared
destructive is at least `ask`), which likewise only ever makes it stricter.
With nothing set, the effect decides (read/write auto, send ask, control off);
an unknown effect means ask, never auto.

Settings come from `DISPATCH_POLICY` in the environment, overridden by what the
owner set from chat (stored in the `setting` table under "policy").

Untrusted content never becomes standing authority. A task is *tainted* once text
written by someone other than the owner can have reached the model: a tool marked
`untrusted` (files, mail, Slack, the screen, plugins) ran in it, or such a tool's
result is in the messages the model is answering. In a tainted task a tool that
`persists` (creating or changing a schedule or a memory note) is `ask` even where
its policy is `auto`: it becomes a card ("… — save this schedule?") and happens only
if the owner approves, exactly once, through the approvals executor. `off` stays off.
"""

from __future__ import annotations

from typing import Any, Literal

from store.db import Store
from tools.registry import Effect, Tool

Policy = Literal["auto", "ask", "off"]
POLICIES: tuple[Policy, ...] = ("auto", "ask", "off")
_STRICTNESS = {"auto": 0, "ask": 1, "off": 2}

EFFECT_DEFAULT: dict[str, Policy] = {
    Effect.READ.value: "auto",
    Effect.WRITE.value: "auto",
    Effect.SEND.value: "ask",
    Effect.CONTROL.value: "off",
}
SETTING_KEY = "policy"


def _valid(value: object) -> Policy | None:
    return value if value in POLICIES else None  # type: ignore[return-value]


def decide(tool: Tool, policies: dict[str, str], *, tainted: bool = False) -> Policy:
    """auto, ask or off for this tool under these policies (in a tainted task or not)."""
    effect = tool.effect.value if isinstance(tool.effect, Effect) else str(tool.effect)
    base: Policy = _valid(policies.get(tool.connector)) or EFFECT_DEFAULT.get(effect, "ask")
    narrowed = _valid(policies.get(tool.name))
    if narrowed and _STRICTNESS[narrowed] > _STRICTNESS[base]:
        base = narrowed
    floor = _valid(tool.min_policy)  # what the tool itself demands (a plugin's destructive hint)
    if floor and _STRICTNESS[floor] > _STRICTNESS[base]:
        base = floor
    if base == "ask" and effect == Effect.CONTROL.value:
        # A click approved minutes later would land on a screen that has changed since:
        # control runs while the owner has it on (every action audited) or not at all.
        return "off"
    if tainted and tool.persists and base == "auto":
        return "ask"
    return base


def untrusted_in(messages: list[dict[str, Any]], untrusted: set[str]) -> bool:
    """Whether these API messages hold a call to (hence a result of) an untrusted tool."""
    for m in messages:
        content = m.get("content")
        if m.get("role") != "assistant" or not isinstance(content, list):
            continue
        if any(isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") in untrusted
               for b in content):
            return True
    return False


def current_policies(store: Store, env_overrides: dict[str, str]) -> dict[str, str]:
    """Environment defaults, then the owner's choices from chat on top."""
    merged = {k: v for k, v in env_overrides.items() if v in POLICIES}
    stored = store.get_setting(SETTING_KEY, {}) or {}
    merged.update({k: v for k, v in stored.items() if v in POLICIES})
    return merged


def set_policy(store: Store, key: str, value: str) -> None:
    """Set a connector's (or one tool's) policy from chat. Logged to the audit log."""
    if value not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {value!r}")
    stored = dict(store.get_setting(SETTING_KEY, {}) or {})
    stored[key] = value
    store.set_setting(SETTING_KEY, stored)
    store.log("policy", f"{key} set to {value}", key=key, value=value)
