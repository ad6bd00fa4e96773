"""What the owner reads for status, pending drafts, the log and usage: plain text,
the same on every app (each front end only wraps it in its own markup)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import sqlalchemy as sa

from agent.cards import Card, split_preview
from store.config import Settings
from store.db import Store
from store.models import Action, ModelCall
from store.usage import spent_today

if TYPE_CHECKING:
    from agent.core import Status


def pending_text(cards: list[Card]) -> str:
    """One line a draft: what it is and where it goes (the head of its card)."""
    if not cards:
        return "No drafts are waiting for you."
    out = [f"{len(cards)} draft(s) waiting:"]
    for c in cards:
        head = [ln.strip() for ln in c.parts[0].splitlines() if ln.strip()]
        out.append(f"  #{c.approval_id} {c.tool}: " + " · ".join(head)[:300])
        if c.expires:
            out.append(f"      expires {c.expires}")
    return "\n".join(out)


def card_text(card: Card) -> str:
    """The whole card as plain text (the terminal, `dispatch show N`)."""
    lines = [f"┌ {card.title} — {card.tool} — {card.status.splitlines()[0] if not card.pending else 'needs your approval'}",
             *(f"│ {ln}" for ln in card.preview.splitlines())]
    if card.pending and card.expires:
        lines.append(f"│ (expires {card.expires} if not decided)")
    if not card.pending:
        lines.extend(f"│ {ln.strip()}" for ln in card.status.splitlines()[1:])
    return "\n".join(lines)


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


# What `log -v` shows of an action's stored detail, in this order (never a secret: they are not stored).
DETAIL_KEYS = ("reason", "by", "outcome", "error", "args", "text", "path", "platform", "user", "key", "value")


def log_text(actions: list[Action], *, verbose: bool = False, store: Store | None = None) -> str:
    """The log, oldest first. Verbose adds each action's stored detail under it — the reason
    of a rejection, who decided, the outcome, a tool's arguments — and for a draft, where it
    goes (the head of its card: recipients, subject, channel), read from the store."""
    if not actions:
        return "The log is empty."
    out = []
    for a in reversed(actions):
        mark = "" if a.ok else " ✗"
        out.append(f"{a.at:%m-%d %H:%M} {a.kind:<8} {a.summary}{mark}")
        if verbose:
            out.extend(f"      {line}" for line in _details(a, store))
    return "\n".join(out)


def _details(a: Action, store: Store | None) -> list[str]:
    detail = a.detail or {}
    lines = []
    if store is not None and isinstance(detail.get("approval"), int):
        head = _draft_head(store, detail["approval"])
        if head:
            lines.append(head)
    for key in DETAIL_KEYS:
        value = detail.get(key)
        if value not in (None, "", [], {}):
            lines.append(f"{key}: {_clip(' '.join(str(value).split()), 300)}")
    return lines


def _draft_head(store: Store, approval_id: int) -> str:
    from store.models import Approval

    with store.session() as s:
        row = s.get(Approval, approval_id)
    if row is None:
        return ""
    head = split_preview(row.preview)[0]
    return "draft: " + _clip(" · ".join(ln.strip() for ln in head.splitlines() if ln.strip()), 400)


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


def _clip(text: str, n: int = 50) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
