"""The Telegram side of the channel protocol: what the core says, as Telegram messages.

- Text: Markdown -> Telegram HTML in pieces of <= 4,096 characters; a piece
  Telegram still refuses to parse is sent again as plain text.
- Progress: one status message per task, sent silently (the answer or a card is
  what notifies the phone, once per request), edited at most every 2 s with the
  step and the time so far (the newest text wins; nothing is queued up), plus the
  typing indicator while work goes on; removed when the task ends.
  Flood limits are PTB's AIORateLimiter's job: a RetryAfter is waited out and the
  same edit retried — never replaced by a new message.
- Cards: each draft is a new message (so the phone notifies), with Approve /
  Reject / Edit buttons whose callback data is only `a:<id>` etc.; after the
  decision the same message is edited to the outcome, buttons removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Callable

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest

from agent.cards import fit_text
from agent.channel import Card
from bot.telegram.format import to_telegram

log = logging.getLogger("dispatch.telegram")

PROGRESS_EVERY_S = 2.0
TYPING_EVERY_S = 4.5  # Telegram shows "typing…" for 5 s per action
MAX_UPLOAD = 50 * 1024 * 1024  # the Bot API's sendDocument limit


def chat_of(origin: str) -> int:
    return int(origin.split(":", 1)[1])


MAX_MESSAGE = 4096  # Telegram's limit, after entity parsing; we measure the escaped HTML, which is longer


def card_keyboard(card: Card) -> InlineKeyboardMarkup | None:
    """Approve / Reject / Edit while pending, and "Full text" whenever the card had to be
    shortened (also after the decision: the owner may want to see what went out)."""
    n, row = card.approval_id, []
    if card.pending:
        yes, no = card.buttons
        row = [InlineKeyboardButton(yes, callback_data=f"a:{n}"), InlineKeyboardButton(no, callback_data=f"r:{n}")]
        if card.editable:
            row.append(InlineKeyboardButton("✏️ Edit", callback_data=f"e:{n}"))
    if _fit(card)[1]:
        row.append(InlineKeyboardButton("📄 Full text", callback_data=f"f:{n}"))
    return InlineKeyboardMarkup([row]) if row else None


def card_html(card: Card) -> str:
    return _fit(card)[0]


def _fit(card: Card) -> tuple[str, int]:
    """The card as Telegram HTML within one message, and how many characters of the text
    were left out. What goes where (head) and the attachments (tail) are never cut;
    only the text is, and the card then says how much more there is."""
    head, body, tail = card.parts
    top = f"<b>{escape(card.title)}</b> · {escape(card.tool)}\n\n"
    status = escape(card.status, quote=False)
    end = f"\n\n<b>{status}</b>" if not card.pending else f"\n\n{status}"
    if card.pending and card.expires:
        end += f"\nExpires {escape(card.expires)}."

    def render(text: str, left: int) -> str:
        more = f"\n… {left:,} more characters: tap Full text." if left else ""
        parts = [escape(head, quote=False), escape(text, quote=False) + more if text or more else "",
                 escape(tail, quote=False)]
        inside = "\n\n".join(x for x in parts if x)
        return f"{top}<pre>{inside}</pre>{end}"

    whole = render(body, 0)
    if len(whole) <= MAX_MESSAGE:
        return whole, 0
    room = MAX_MESSAGE - len(render("", 10 ** 9))
    if room < 100:  # even the recipients and attachments do not fit one message: say so, never drop
        plain = f"{head}\n\n{body}\n\n{tail}".strip()
        cut, left = fit_text(plain, MAX_MESSAGE - len(top) - len(end) - 120, lambda s: len(escape(s, quote=False)))
        note = f"\n… {left:,} more characters (recipients, text, attachments): tap Full text before approving."
        return f"{top}<pre>{escape(cut, quote=False)}{escape(note, quote=False)}</pre>{end}", left
    cut, left = fit_text(body, room, lambda s: len(escape(s, quote=False)))
    return render(cut.rstrip(), left + (len(cut) - len(cut.rstrip()))), left or 1


def card_plain(card: Card) -> str:
    """The card without markup, for when Telegram refuses the HTML one: never lost."""
    text = f"{card.title} · {card.tool}\n\n{card.preview}"
    if len(text) > MAX_MESSAGE - 300:
        text = text[:MAX_MESSAGE - 300] + f"\n… {len(text) - (MAX_MESSAGE - 300):,} more characters: tap Full text."
    return f"{text}\n\n{card.status}"


@dataclass
class _Status:
    chat: int = 0
    message_id: int | None = None
    text: str = ""
    shown: str = ""
    last_edit: float = 0.0
    flusher: asyncio.Task[None] | None = None
    typing: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)
    carded: bool = False  # a card was posted during the task: it was the notification


class TelegramChannel:
    platform = "telegram"

    def __init__(self, bot: Bot, owner_chats: Callable[[], list[str]] | None = None) -> None:
        self.bot = bot
        self._owner_chats = owner_chats or (lambda: [])
        self.progress_every = PROGRESS_EVERY_S
        self._status: dict[int, _Status] = {}
        self._quiet: set[int] = set()  # chats whose next answer comes silently (a card already notified)

    # Text and files --------------------------------------------------------

    async def send_text(self, origin: str, text: str) -> None:
        chat = chat_of(origin)
        quiet = chat in self._quiet  # the task's card notified the phone; its answer need not again
        self._quiet.discard(chat)
        for piece in to_telegram(text):
            try:
                await self.bot.send_message(chat, piece.html, parse_mode=ParseMode.HTML,
                                            disable_web_page_preview=True, disable_notification=quiet)
            except BadRequest as exc:
                if "parse" not in str(exc).lower():
                    raise
                log.warning("Telegram refused the HTML (%s); sending plain text", exc)
                await self.bot.send_message(chat, piece.plain or "…", disable_notification=quiet)

    async def send_file(self, origin: str, path: Path, caption: str = "") -> str:
        size = path.stat().st_size
        if size > MAX_UPLOAD:
            mb = size / 1024 / 1024
            await self.send_text(origin, f"{path.name} is {mb:.0f} MB, over Telegram's 50 MB limit for bots, "
                                         f"so it stays on the desktop at `{path}`.")
            return f"not sent: {mb:.0f} MB is over Telegram's 50 MB limit; the owner was given the path {path}"
        with open(path, "rb") as fh:
            await self.bot.send_document(chat_of(origin), fh, filename=path.name, caption=caption[:1024] or None)
        return f"sent {path.name} ({size:,} bytes) to Telegram"

    # Progress ----------------------------------------------------------------

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        chat = chat_of(origin)
        st = self._status.setdefault(task_id, _Status(chat))
        if done:
            await self._close(chat, task_id, st, text)
            return
        st.text = text
        if st.typing is None:
            st.typing = asyncio.create_task(self._keep_typing(chat))
        if st.message_id is None:
            # Silent: the answer (or a card) is what notifies the phone, once per request.
            st.message_id = (await self.bot.send_message(chat, f"⏳ {text}", disable_notification=True)).message_id
            st.shown, st.last_edit = text, time.monotonic()
            return
        wait = self.progress_every - (time.monotonic() - st.last_edit)
        if wait <= 0 and st.flusher is None:
            await self._edit(chat, st)
        elif st.flusher is None:
            st.flusher = asyncio.create_task(self._flush_later(chat, st, wait))

    async def _flush_later(self, chat: int, st: _Status, wait: float) -> None:
        await asyncio.sleep(wait)
        st.flusher = None
        await self._edit(chat, st)

    async def _edit(self, chat: int, st: _Status) -> None:
        if st.message_id is None or st.text == st.shown:
            return
        text = st.text
        st.last_edit = time.monotonic()
        try:
            elapsed = time.monotonic() - st.started
            await self.bot.edit_message_text(f"⏳ {text} · {elapsed:.0f} s", chat_id=chat, message_id=st.message_id)
            st.shown = text
        except BadRequest as exc:  # "message is not modified" and friends: harmless
            log.debug("status edit refused: %s", exc)

    async def _close(self, chat: int, task_id: int, st: _Status, text: str) -> None:
        self._status.pop(task_id, None)
        if st.carded:
            self._quiet.add(chat)
        for t in (st.flusher, st.typing):
            if t is not None:
                t.cancel()
        if st.message_id is None:
            return
        try:  # the answer follows as a message of its own; the status line has done its job
            await self.bot.delete_message(chat, st.message_id)
        except BadRequest as exc:
            log.debug("status removal refused: %s", exc)

    async def _keep_typing(self, chat: int) -> None:
        try:
            while True:
                await self.bot.send_chat_action(chat, ChatAction.TYPING)
                await asyncio.sleep(TYPING_EVERY_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # typing is a nicety; never let it break a task
            log.debug("typing indicator stopped: %s", exc)

    def default_origin(self) -> str | None:
        """The owner's private chat (a user's private chat id is their user id)."""
        chats = self._owner_chats()
        return f"telegram:{chats[0]}" if chats else None

    # Approval cards ------------------------------------------------------------

    async def show_card(self, origin: str, card: Card) -> dict[str, Any]:
        chat = chat_of(origin)
        for st in self._status.values():
            if st.chat == chat:
                st.carded = True
        try:
            msg = await self.bot.send_message(chat, card_html(card), parse_mode=ParseMode.HTML,
                                              reply_markup=card_keyboard(card))
        except BadRequest as exc:  # refused: the same card in its simplest form, with a Full text button
            log.warning("Telegram refused card #%s (%s); sending it as plain text", card.approval_id, exc)
            keyboard = card_keyboard(card)
            rows = list(keyboard.inline_keyboard) if keyboard else []
            if not any(b.callback_data == f"f:{card.approval_id}" for row in rows for b in row):
                rows.append((InlineKeyboardButton("📄 Full text", callback_data=f"f:{card.approval_id}"),))
            msg = await self.bot.send_message(chat, card_plain(card), reply_markup=InlineKeyboardMarkup(rows))
        return {"chat_id": chat, "message_id": msg.message_id}

    async def update_card(self, ref: dict[str, Any], card: Card) -> None:
        markup = card_keyboard(card)
        try:
            await self.bot.edit_message_text(card_html(card), chat_id=ref["chat_id"], message_id=ref["message_id"],
                                              parse_mode=ParseMode.HTML, reply_markup=markup)
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise
