"""Plain-text renderings the front ends share: cards, status, log, usage, policies.

Each front end wraps these in its own markup (Telegram HTML, Slack mrkdwn, the
terminal as is), so the owner reads the same words everywhere.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import sqlalchemy as sa

from agent import gate
from agent.channel import Card
from store.usage import spent_today
from store.config import Settings
from store.db import Store
from store.models import Action, Approval, ModelCall

if TYPE_CHECKING:  # the core (and the model SDK) only when a command needs it
    from agent.core import Core, Status

OUTCOME = {
    "pending": "waiting for your decision",
    "approved": "approved — sending…",
    "sending": "approved — sending…",
    "sent": "✅ sent",
    "failed": "❌ failed — not sent",
    "unknown": "⚠️ may or may not have been sent — please check",
    "rejected": "✖️ rejected — not sent",
    "expired": "⌛ expired — not sent",
    "superseded": "✏️ replaced by an edited revision",
}


def card_text(card: Card, *, commands: bool = False) -> str:
    head = f"Draft #{card.approval_id}" + (f" (revision of #{card.revision_of})" if card.revision_of else "")
    lines = [f"┌ {head} — {card.tool} — needs your approval", *(f"│ {ln}" for ln in card.preview.splitlines())]
    if card.expires_at:
        lines.append(f"│ (expires {card.expires_at} UTC if not decided)")
    if commands:
        n = card.approval_id
        lines.append(f"└ /approve {n}   ·   /reject {n} [reason]   ·   /edit {n} new text")
    return "\n".join(lines)


def card_outcome(card: Card) -> str:
    text = f"Draft #{card.approval_id} ({card.tool}): {OUTCOME.get(card.state, card.state)}"
    if card.state in ("failed", "unknown") and card.outcome:
        text += f"\n    {card.outcome}"
    if card.state == "rejected" and card.reason:
        text += f"\n    reason: {card.reason}"
    return text


def pending_text(rows: list[Approval]) -> str:
    if not rows:
        return "No drafts are waiting for you."
    out = [f"{len(rows)} draft(s) waiting:"]
    for r in rows:
        first = r.preview.splitlines()[0] if r.preview else ""
        out.append(f"  #{r.id} {r.tool}: {first[:80]}")
    return "\n".join(out)


def status_text(st: "Status") -> str:
    lines = []
    if st.running:
        lines.append(f"Running: task #{st.running.id} “{_clip(st.running.text)}” ({st.running.steps} step(s) so far)")
    else:
        lines.append("Nothing is running.")
    if st.queued:
        lines.append("Queued: " + ", ".join(f"#{t.id} “{_clip(t.text, 30)}”" for t in st.queued))
    lines.append(f"Waiting for approval: {len(st.pending)} draft(s)" + (
        " — " + ", ".join(f"#{a.id}" for a in st.pending) if st.pending else ""))
    return "\n".join(lines)


def log_text(actions: list[Action]) -> str:
    if not actions:
        return "The log is empty."
    out = []
    for a in reversed(actions):
        mark = "" if a.ok else " ✗"
        out.append(f"{a.at:%m-%d %H:%M} {a.kind:<8} {a.summary}{mark}")
    return "\n".join(out)


def usage_text(store: Store, settings: Settings) -> str:
    t = ModelCall.__table__  # type: ignore[attr-defined]
    week_ago = datetime.now(timezone.utc) - timedelta(days=7)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(t.c.input_tokens), 0),
            sa.func.coalesce(sa.func.sum(t.c.output_tokens), 0),
            sa.func.coalesce(sa.func.sum(t.c.cache_creation_input_tokens), 0),
            sa.func.coalesce(sa.func.sum(t.c.cache_read_input_tokens), 0),
            sa.func.coalesce(sa.func.sum(t.c.cost_usd), 0.0),
        ).where(t.c.created_at >= week_ago)).one()
    calls, inp, out, write, read, cost = row
    total_in = inp + write + read
    share = f"{100 * read / total_in:.0f}%" if total_in else "—"
    today = spent_today(store, settings)
    budget = f" of ${settings.daily_budget_usd:.2f} budget" if settings.daily_budget_usd is not None else ""
    return (f"Today: ${today:.4f}{budget}\n"
            f"Last 7 days: {calls} model calls, ${cost:.4f} (estimate)\n"
            f"  input {inp:,} · cache write {write:,} · cache read {read:,} ({share} of input) · output {out:,}")


def policy_text(core: "Core") -> str:
    policies = gate.current_policies(core.store, core.settings.policy_overrides)
    lines = ["Policies (auto = run, ask = draft for your approval, off = not offered):"]
    by_connector: dict[str, list[str]] = {}
    for t in core.registry.all():
        by_connector.setdefault(t.connector, []).append(f"{t.name}={gate.decide(t, policies)}")
    for connector, tools in sorted(by_connector.items()):
        lines.append(f"  {connector}: {policies.get(connector, 'default')} — " + ", ".join(tools))
    return "\n".join(lines)


def policy_command(core: "Core", rest: str) -> str:
    parts = rest.split()
    if not parts:
        return policy_text(core)
    if len(parts) != 2:
        return "Usage: /policy CONNECTOR_OR_TOOL auto|ask|off"
    key, value = parts[0], parts[1].lower()
    known = {t.connector for t in core.registry.all()} | {t.name for t in core.registry.all()}
    if key not in known:
        return f"There is no connector or tool called {key!r}. Known: {', '.join(sorted(known))}."
    try:
        gate.set_policy(core.store, key, value)
    except ValueError as exc:
        return str(exc)
    return f"{key} is now {value}.\n" + policy_text(core)


def _clip(text: str, n: int = 50) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
