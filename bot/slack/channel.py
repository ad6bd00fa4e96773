"""The Slack side of the channel protocol: what the core says, as messages in the owner's DM.

- Text: Markdown -> mrkdwn (bot/slackformat.py) in pieces of <= 4,000 characters,
  link and media unfurls off (a reply is not a place for previews of every link).
- Files: `files_upload_v2` (the only upload API Slack still accepts) into the DM;
  over Slack's 1 GB limit the owner is given the path on the desktop instead.
- Progress: one status message per task — posted only once the task has taken 5 s
  (every Slack message notifies the phone; a quick answer should notify it once) —
  changed in place with `chat_update` at most every 2 s. Updates run in the
  background, never in the task's way: the newest text wins, nothing queues up, and a 429 is waited out (slack_sdk's
  RateLimitErrorRetryHandler sleeps for Retry-After and retries the same update),
  never replaced by a new message. Bots can't show "typing…" through the Web API,
  so the status line is the sign of life.
- Cards: each draft is a new message (so the phone notifies) in Block Kit: the
  preview, and Approve / Reject / Edit buttons whose `value` is only the draft's id
  (everything else is read from the store). After the decision `chat_update`
  replaces the same message with the outcome and no buttons. A card's ref is
  {"channel", "ts"}; the router stores it with platform "slack", so a decision
  made on Telegram or in the terminal redraws it here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from agent.cards import fit_text
from agent.channel import Card
from bot.slack.format import code_text, escape, to_mrkdwn

log = logging.getLogger("dispatch.slack")

PROGRESS_EVERY_S = 2.0
STATUS_AFTER_S = 5.0  # a task shorter than this shows no status line (it would notify the phone)
MAX_UPLOAD = 1024 * 1024 * 1024  # Slack's limit per file
ACTIONS = {"approve": "dispatch_approve", "reject": "dispatch_reject", "edit": "dispatch_edit",
           "full": "dispatch_full"}


def channel_of(origin: str) -> str:
    return origin.split(":", 1)[1]


# Cards ------------------------------------------------------------------------------


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(label: str, action: str, n: int, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": ACTIONS[action], "value": str(n),
                              "text": {"type": "plain_text", "text": label, "emoji": True}}
    if style:
        button["style"] = style
    return button


SECTION_MAX = 3000  # a section's text, after escaping


def _code_section(text: str) -> dict[str, Any]:
    return _section(f"```{code_text(text) or ' '}```")


def card_blocks(card: Card) -> list[dict[str, Any]]:
    """The card in Block Kit: head, preview, and buttons while pending (the outcome after).
    What goes where (head) and the attachments (tail) are shown whole, in sections of
    their own; only the text is shortened, measured after escaping, and then the card
    says how much more there is and offers Full text."""
    n = card.approval_id
    head, body, tail = card.parts
    blocks = [_section(f"*{escape(card.title)}* · {escape(card.tool)}")]
    blocks += [_code_section(piece) for piece in _pieces(head)]
    left = 0
    if body:
        room = SECTION_MAX - len("``````") - 60
        cut, left = fit_text(body, room, lambda s: len(code_text(s)))
        more = f"\n… {left:,} more characters: tap Full text." if left else ""
        blocks.append(_code_section(cut.rstrip() + more))
    blocks += [_code_section(piece) for piece in _pieces(tail)]
    buttons = []
    if card.pending:
        yes, no = card.buttons
        buttons = [_button(yes, "approve", n, "primary"), _button(no, "reject", n)]
        if card.editable:
            buttons.append(_button("✏️ Edit", "edit", n))
    if left:
        buttons.append(_button("📄 Full text", "full", n))
    if not card.pending:
        blocks.append(_section(f"*{escape(card.status)}*"))
    else:
        note = card.status + (f" Expires {card.expires}." if card.expires else "")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(note)}]})
    if buttons:
        blocks.append({"type": "actions", "block_id": f"dispatch_card_{n}", "elements": buttons})
    return blocks[:50]


def _pieces(text: str) -> list[str]:
    """A part that must be shown whole, in as many sections as it takes (a long list
    of recipients is never cut)."""
    out, piece = [], ""
    for line in text.splitlines():
        while len(code_text(line)) > SECTION_MAX - 10:  # one enormous line: split it where it fits
            cut, _ = fit_text(line, SECTION_MAX - 10, lambda s: len(code_text(s)))
            out.append(piece) if piece else None
            out.append(cut)
            piece, line = "", line[len(cut):]
        if len(code_text(piece + "\n" + line)) > SECTION_MAX - 10:
            out.append(piece)
            piece = line
        else:
            piece = f"{piece}\n{line}" if piece else line
    if piece:
        out.append(piece)
    return out


def plain_card_blocks(card: Card) -> list[dict[str, Any]]:
    """A card with no formatting at all: plain-text sections (no escaping to go wrong),
    the text cut to fit with Full text offered, and the buttons."""
    text = f"{card.title} · {card.tool}\n\n{card.preview}"
    limit = SECTION_MAX - 200
    if len(text) > limit:
        text = text[:limit] + f"\n… {len(text) - limit:,} more characters: tap Full text."
    n = card.approval_id
    buttons = [_button(card.buttons[0], "approve", n, "primary"), _button(card.buttons[1], "reject", n)] \
        if card.pending else []
    buttons.append(_button("📄 Full text", "full", n))
    return [{"type": "section", "text": {"type": "plain_text", "text": text, "emoji": False}},
            {"type": "section", "text": {"type": "plain_text", "text": card.status[:SECTION_MAX], "emoji": False}},
            {"type": "actions", "block_id": f"dispatch_card_{n}", "elements": buttons}]


def card_fallback(card: Card) -> str:
    """The notification text (and what clients without Block Kit show)."""
    if card.pending:
        return escape(f"Draft #{card.approval_id} ({card.tool}) needs your approval")
    return escape(card.status)


@dataclass
class _Status:
    channel: str
    ts: str | None = None
    text: str = ""
    shown: str = ""
    last_edit: float = 0.0
    flusher: asyncio.Task[None] | None = None
    poster: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)


class SlackChannel:
    platform = "slack"

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.progress_every = PROGRESS_EVERY_S
        self.status_after = STATUS_AFTER_S
        # The owner's DM channel (D...), once known: opened at start, or where they last wrote.
        self.owner_dm: str | None = None
        self._status: dict[int, _Status] = {}

    def default_origin(self) -> str | None:
        """The owner's DM, for what comes from an app that is not running now."""
        return f"slack:{self.owner_dm}" if self.owner_dm else None

    async def _where(self, origin: str) -> str:
        return channel_of(origin)

    # Text and files ----------------------------------------------------------

    async def send_text(self, origin: str, text: str) -> None:
        channel = await self._where(origin)
        for piece in to_mrkdwn(text):
            await self.client.chat_postMessage(channel=channel, text=piece, mrkdwn=True,
                                               unfurl_links=False, unfurl_media=False)

    async def post(self, channel: str, text: str, **kwargs: Any) -> str:
        """A plain message (already mrkdwn) from the front end itself; returns its ts."""
        resp = await self.client.chat_postMessage(channel=channel, text=text, unfurl_links=False,
                                                  unfurl_media=False, **kwargs)
        return str(resp["ts"])

    async def send_file(self, origin: str, path: Path, caption: str = "") -> str:
        channel = await self._where(origin)
        size = path.stat().st_size
        if size > MAX_UPLOAD:
            gb = size / 1024 ** 3
            await self.send_text(origin, f"{path.name} is {gb:.1f} GB, over Slack's 1 GB limit for a file, "
                                         f"so it stays on the desktop at `{path}`.")
            return f"not sent: {gb:.1f} GB is over Slack's 1 GB limit; the owner was given the path {path}"
        await self.client.files_upload_v2(channel=channel, file=str(path), filename=path.name, title=path.name,
                                          initial_comment=caption[:3000] or None)
        return f"sent {path.name} ({size:,} bytes) to Slack"

    # Progress ------------------------------------------------------------------

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        st = self._status.get(task_id)
        if done:
            if st is not None:
                await self._close(task_id, st, text)
            return
        if st is None:
            st = self._status[task_id] = _Status(await self._where(origin))
        st.text = text
        if st.ts is None:
            if st.poster is None:  # Slack has no silent message: a quick answer comes without one
                st.poster = asyncio.create_task(self._post_status(st), name=f"slack-status-{task_id}")
        elif st.flusher is None:
            st.flusher = asyncio.create_task(self._flush(st), name=f"slack-progress-{task_id}")

    async def _post_status(self, st: _Status) -> None:
        """The status line, once the task has taken `status_after` seconds: every Slack
        message notifies the phone, and a request should notify it once, with the answer."""
        await asyncio.sleep(self.status_after)
        st.ts = await self.post(st.channel, f"⏳ {escape(st.text)}")
        st.shown, st.last_edit = st.text, time.monotonic()

    async def _flush(self, st: _Status) -> None:
        """Bring the status message up to the newest text, at most once per window."""
        try:
            while st.text != st.shown:
                wait = self.progress_every - (time.monotonic() - st.last_edit)
                if wait > 0:
                    await asyncio.sleep(wait)
                text = st.text
                st.last_edit = time.monotonic()
                try:
                    await self.client.chat_update(channel=st.channel, ts=st.ts, text=f"⏳ {escape(text)}")
                except SlackApiError as exc:  # the message was deleted, or Slack refused: harmless
                    log.debug("status update refused: %s", exc.response.get("error"))
                st.shown = text
        finally:
            st.flusher = None

    async def _close(self, task_id: int, st: _Status, text: str) -> None:
        self._status.pop(task_id, None)
        for pending in (st.flusher, st.poster):
            if pending is not None and not pending.done():
                pending.cancel()
        if st.ts is None:
            return
        mark = "✓" if text.startswith("Done") else "■"
        try:
            await self.client.chat_update(channel=st.channel, ts=st.ts,
                                          text=f"{mark} {escape(text)} ({time.monotonic() - st.started:.0f} s)")
        except SlackApiError as exc:
            log.debug("status close refused: %s", exc.response.get("error"))

    # Approval cards --------------------------------------------------------------

    async def show_card(self, origin: str, card: Card) -> dict[str, Any]:
        channel = await self._where(origin)
        try:
            resp = await self.client.chat_postMessage(channel=channel, text=card_fallback(card),
                                                      blocks=card_blocks(card), unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:  # refused (invalid_blocks, msg_too_long…): the simplest form, never lost
            log.warning("Slack refused card #%s (%s); sending a plain one", card.approval_id,
                        exc.response.get("error"))
            resp = await self.client.chat_postMessage(channel=channel, text=card_fallback(card),
                                                      blocks=plain_card_blocks(card), unfurl_links=False,
                                                      unfurl_media=False)
        return {"channel": str(resp["channel"]), "ts": str(resp["ts"])}

    async def update_card(self, ref: dict[str, Any], card: Card) -> None:
        await self.client.chat_update(channel=ref["channel"], ts=ref["ts"], text=card_fallback(card),
                                      blocks=card_blocks(card))
