"""The card model: what an approval card says, built once in the core.

Every front end renders a `Card` within its platform's limits (Telegram HTML,
Slack Block Kit, the terminal) and nothing else: the wording of states and
outcomes, the expiry in the owner's time zone, whether the text can be edited,
all come from here, so a card reads the same on every app.

A preview is made of three parts (see `split_preview`): the head (what goes where:
recipients, subject, destination — never shortened), the text (may be shortened
to fit a platform, which then says how much more there is), and the tail
(attachments with their sizes — never shortened).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from typing import TYPE_CHECKING

from agent.states import State

if TYPE_CHECKING:
    from store.models import Approval

OUTCOME = {
    State.PENDING: "waiting for your decision",
    State.APPROVED: "approved — sending…",
    State.SENDING: "approved — sending…",
    State.SENT: "✅ sent",
    State.FAILED: "❌ failed — not sent",
    State.UNKNOWN: "⚠️ may or may not have been sent — please check",
    State.REJECTED: "✖️ rejected — not sent",
    State.EXPIRED: "⌛ expired — not sent",
    State.SUPERSEDED: "✏️ replaced by an edited revision",
}
ASK = "Send this? Nothing goes out unless you approve."
# A draft that saves standing authority (a schedule, a memory note) rather than sending.
SAVE_OUTCOME = {**OUTCOME, State.APPROVED: "approved — saving…", State.SENDING: "approved — saving…",
                State.SENT: "✅ saved", State.FAILED: "❌ failed — not saved",
                State.UNKNOWN: "⚠️ may or may not have been saved — please check",
                State.REJECTED: "✖️ discarded — not saved", State.EXPIRED: "⌛ expired — not saved"}
SAVE_ASK = "Save this? Nothing is saved unless you approve."


@dataclass(frozen=True)
class Card:
    """One draft as every front end shows it. Built from the store alone, so a card
    can be redrawn after a restart, or by another process, from the approval row."""

    approval_id: int
    tool: str
    preview: str  # the whole preview; head + text + tail
    state: str
    outcome: str = ""
    reason: str = ""
    revision_of: int | None = None
    expires: str = ""  # "Tue 01 Dec 09:14 (Europe/Berlin)", in the owner's time zone
    editable: bool = False  # the tool has a text the owner may replace (Edit button)
    saves: bool = False  # it saves a schedule or a note (Save / Discard), rather than sending

    @property
    def buttons(self) -> tuple[str, str]:
        """The labels of the yes and no buttons."""
        return ("✅ Save", "✖️ Discard") if self.saves else ("✅ Approve", "✖️ Reject")

    @property
    def pending(self) -> bool:
        return self.state == State.PENDING

    @property
    def title(self) -> str:
        return f"Draft #{self.approval_id}" + (f" (edited revision of #{self.revision_of})" if self.revision_of else "")

    @property
    def status(self) -> str:
        """The line under the preview: the question while pending, the outcome after."""
        return (SAVE_ASK if self.saves else ASK) if self.pending else outcome_line(self)

    @property
    def parts(self) -> tuple[str, str, str]:
        return split_preview(self.preview)


def outcome_line(card: Card) -> str:
    words = SAVE_OUTCOME if card.saves else OUTCOME
    text = f"Draft #{card.approval_id} ({card.tool}): {words.get(card.state, card.state)}"  # type: ignore[call-overload]
    if card.state in (State.FAILED, State.UNKNOWN) and card.outcome:
        text += f"\n    {card.outcome}"
    if card.state == State.REJECTED and card.reason:
        text += f"\n    reason: {card.reason}"
    return text


def state_words(state: str, saves: bool = False) -> str:
    return (SAVE_OUTCOME if saves else OUTCOME).get(state, state)  # type: ignore[call-overload]


def card_of(row: Approval, *, editable: bool, tz: ZoneInfo, saves: bool = False) -> Card:
    return Card(
        approval_id=row.id or 0, tool=row.tool, preview=row.preview, state=row.state, outcome=row.outcome,
        reason=row.reason, revision_of=row.revision_of, expires=local_time(row.expires_at, tz), editable=editable,
        saves=saves,
    )


def local_time(at: datetime | None, tz: ZoneInfo) -> str:
    if at is None:
        return ""
    return f"{at.astimezone(tz):%a %d %b %H:%M} ({tz.key})"


def split_preview(preview: str) -> tuple[str, str, str]:
    """(head, text, tail). The head runs to the first blank line, the tail is the last
    paragraph when it lists attachments; what is between is the text. A preview with no
    blank line is all head (it is shown whole)."""
    head, sep, rest = preview.partition("\n\n")
    if not sep:
        return preview, "", ""
    body, sep2, tail = rest.rpartition("\n\n")
    if sep2 and tail.lstrip().lower().startswith(("attachments", "files", "attached")):
        return head, body, tail
    return head, rest, ""


def fit_text(text: str, room: int, measure: "callable[[str], int]" = len) -> tuple[str, int]:  # type: ignore[valid-type]
    """The longest start of `text` whose measured length fits `room`, and how many
    characters were left out. `measure` is the platform's length after escaping."""
    if measure(text) <= room:
        return text, 0
    lo, hi = 0, len(text)
    while lo < hi:  # binary search on the cut point: escaping makes length non-linear
        mid = (lo + hi + 1) // 2
        if measure(text[:mid]) <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo], len(text) - lo
