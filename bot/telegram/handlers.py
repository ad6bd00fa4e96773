"""Telegram handlers: small module-level functions, as in python-telegram-bot's examples.

Each one translates an update into one call on the core's API (agent.api) and its
typed result into Telegram messages; no decision is made here. The API travels in
`application.bot_data["api"]`. `guard` runs first (group -1) for every update and
stops everything that is not the owner in a private chat; whether a stranger's
message is a pairing attempt is decided by `PAIR.check_update` — the very handler
that routes /pair — so no other parse of the text can let a message through.
"""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import ApplicationHandlerStop, CommandHandler, ContextTypes

from typing import TYPE_CHECKING

from agent.results import Button, Who
from bot.inbox import download_with_retry, inbox_path

log = logging.getLogger("dispatch.telegram")

if TYPE_CHECKING:  # the API itself is handed over at start (bot_data["api"]): polling starts before it
    from agent.api import CoreAPI

PLATFORM = "telegram"
MAX_DOWNLOAD = 20 * 1024 * 1024  # the Bot API's getFile limit
COMMANDS = [
    ("status", "What is running, queued, waiting for approval"),
    ("pending", "Drafts waiting for your approval"),
    ("cancel", "Stop the running task"),
    ("log", "Recent actions: tools, files sent, sends, refusals"),
    ("usage", "Tokens and cost"),
    ("settings", "Policies: what runs, what asks, what is off"),
    ("awake", "Keep the desktop awake: /awake on|off"),
    ("computer", "Let the agent use screen, mouse, keyboard: /computer on|off"),
    ("screenshot", "See the desktop's screen now"),
    ("help", "How to use Dispatch"),
    ("pair", "Pair this account: /pair CODE"),
]
HELP = (
    "<b>Dispatch</b> works on your desktop while you're away.\n\n"
    "Send a task in plain words — \u201cfind last week's campaign numbers and send me a summary\u201d. "
    "Documents, photos and voice notes you send are saved on the desktop and handed to the task.\n\n"
    "Anything that would leave the desktop (an email, a Slack post) comes back here as a draft "
    "with <b>Approve</b> / <b>Reject</b> / <b>Edit</b> buttons; nothing is sent unless you approve.\n\n"
    + "\n".join(f"/{c} — {escape(d)}" for c, d in COMMANDS)
)
CARD_BUTTON = r"^([aref]):(\d{1,9})$"
POLICY_BUTTON = r"^p:([A-Za-z0-9_.:-]{1,40}):(auto|ask|off)$"
AWAKE_BUTTON = r"^k:awake:(on|off)$"
_ACTIONS = {"a": Button.APPROVE, "r": Button.REJECT, "e": Button.EDIT}


def _api(context: ContextTypes.DEFAULT_TYPE) -> CoreAPI:
    return context.application.bot_data["api"]


def _by(update: Update) -> str:
    return f"{PLATFORM}:{update.effective_user.id}"  # type: ignore[union-attr]


def _origin(update: Update) -> str:
    return f"{PLATFORM}:{update.effective_chat.id}"  # type: ignore[union-attr]


async def _say(update: Update, text: str) -> None:
    if text:
        await update.effective_message.reply_text(text)  # type: ignore[union-attr]


# The guard -------------------------------------------------------------------------


async def guard(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Owner only, private chats only; everyone else one polite refusal, all logged."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or chat.type != ChatType.PRIVATE:
        raise ApplicationHandlerStop  # groups and channels are ignored outright
    what = "button press" if update.callback_query else "message"
    who = _api(context).identify(PLATFORM, str(user.id), pairing=bool(PAIR.check_update(update)), what=what,
                                 name=user.full_name, username=user.username or "")
    if who.who != Who.STRANGER:
        return  # the owner; or a stranger's /pair, which only the pair handler sees (below)
    if update.callback_query is not None:
        await update.callback_query.answer(who.reply or "")
    elif who.reply and update.effective_message is not None:
        await update.effective_message.reply_text(who.reply)
    raise ApplicationHandlerStop


# Commands ---------------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_html(HELP)  # type: ignore[union-attr]


async def pair(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    assert user is not None
    reply = _api(context).pair(PLATFORM, str(user.id), user.full_name, " ".join(context.args or []),
                               how="/pair CODE")
    await _say(update, reply.text)


PAIR = CommandHandler("pair", pair)  # routes /pair, and tells the guard what a pairing attempt is


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _say(update, _api(context).status())


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _say(update, await _api(context).cancel())


async def pending(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The list, and fresh cards for the newest few so their buttons are at hand."""
    api = _api(context)
    await _say(update, api.pending_text())
    await api.reshow(_origin(update))


async def show_log(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    text = _api(context).log(25)
    await update.effective_message.reply_html(f"<pre>{escape(text[-3900:], quote=False)}</pre>")  # type: ignore[union-attr]


async def usage(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _say(update, _api(context).usage())


def settings_keyboard(api: CoreAPI) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(item.label, callback_data=f"p:{item.key}:{item.next}")]
            for item in api.policies() if len(f"p:{item.key}:{item.next}".encode()) <= 64]
    label, sets = api.awake_label()
    rows.append([InlineKeyboardButton(label, callback_data=f"k:awake:{'on' if sets else 'off'}")])
    return InlineKeyboardMarkup(rows)


async def settings_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        "Tap a connector to switch it: auto → ask → off.\n"
        "auto = runs · ask = draft for your approval · off = never offered",
        reply_markup=settings_keyboard(_api(context)))


async def awake(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _say(update, await _api(context).awake(" ".join(context.args or [])))


async def computer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _say(update, await _api(context).computer(" ".join(context.args or [])))


async def screenshot(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The current screen, as a file (full resolution; a photo would be recompressed)."""
    await _say(update, await _api(context).screenshot(_origin(update)))


# Messages and files -------------------------------------------------------------------


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    api, msg = _api(context), update.message
    assert msg is not None and msg.text is not None
    replied = msg.reply_to_message
    if replied is not None:
        reply = await api.reply(PLATFORM, {"chat_id": msg.chat_id, "message_id": replied.message_id}, _by(update),
                                msg.text, _origin(update))
        if reply is not None:
            await _say(update, reply.text)
            return
    await api.submit(msg.text, _origin(update))


async def on_file(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A document or photo from the phone: saved to the inbox, handed to a task."""
    api, msg = _api(context), update.message
    assert msg is not None
    if msg.document is not None:
        item, name = msg.document, msg.document.file_name or f"document-{msg.message_id}"
    else:
        item, name = msg.photo[-1], f"photo-{msg.message_id}.jpg"  # the largest size
    path = await _save(api, msg, item, name)
    if path is None:
        return
    caption = msg.caption or f"I sent you a file: {path.name}"
    await api.submit(caption, _origin(update), [str(path)])


async def on_voice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A voice note (or an audio file, a video note): transcribed, shown as "Heard: …"
    (silently: the answer is what notifies), then handled as if it had been typed."""
    api, msg = _api(context), update.message
    assert msg is not None
    item = msg.voice or msg.audio or msg.video_note
    assert item is not None
    path = await _save(api, msg, item, getattr(item, "file_name", None) or f"voice-{msg.message_id}.oga")
    if path is None:
        return
    heard = await api.hear(path, duration=getattr(item, "duration", None))
    if not heard.ok:
        await msg.reply_text(heard.text or "I couldn't make out any words in that recording.")
        return
    await msg.reply_text(f"\U0001f3a4 Heard: {heard.text}", disable_notification=True)
    await api.submit(heard.text, _origin(update))


async def _save(api: CoreAPI, msg: Any, item: Any, name: str) -> Any:
    """A file from the phone into the inbox (downloads retried); None when it could not
    be had, and the owner was told why and what to do."""
    size = item.file_size or 0
    if size > MAX_DOWNLOAD:
        await msg.reply_text(
            f"{name} is {size / 1024 / 1024:.0f} MB; Telegram lets bots download at most 20 MB. "
            "Put it in a folder Dispatch can read (DISPATCH_ROOTS) and tell me where it is.")
        return None
    path = inbox_path(api.settings.home / "inbox", name)

    async def fetch(target: Any) -> None:
        await (await item.get_file()).download_to_drive(target)

    problem = await download_with_retry(fetch, path, name)
    if problem:
        await msg.reply_text(problem)
        return None
    api.received(path, "Telegram")
    return path


async def unsupported(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    msg = update.message
    assert msg is not None
    kind = next((k for k in ("video", "sticker", "animation", "location", "contact", "poll")
                 if getattr(msg, k, None)), "this kind of message")
    await msg.reply_text(f"I can't work with {kind.replace('_', ' ')} messages yet. "
                         "Send text, a voice note, a document or a photo.")


# Buttons ------------------------------------------------------------------------------


async def on_card_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    api, query = _api(context), update.callback_query
    assert query is not None and context.matches
    letter, n = context.matches[0].group(1), int(context.matches[0].group(2))
    message = query.message
    if message is None:  # an inline-mode press carries no message: nothing to check it against
        await query.answer("That button is not valid.", show_alert=True)
        return
    where = {"chat_id": message.chat.id, "message_id": message.message_id}
    if letter == "f":
        await query.answer()
        await _say(update, await api.full_text(n, _origin(update), platform=PLATFORM, where=where))
        return
    press = await api.press(n, _ACTIONS[letter], _by(update), platform=PLATFORM, where=where)
    await query.answer(press.toast or None, show_alert=press.alert)
    if press.ask is not None:
        asked = await message.reply_text(press.ask.text, reply_markup=ForceReply(selective=True))  # type: ignore[union-attr]
        api.add_prompt(n, PLATFORM, press.ask.purpose, {"chat_id": asked.chat_id, "message_id": asked.message_id})


async def on_policy_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    api, query = _api(context), update.callback_query
    assert query is not None and context.matches
    change = api.set_policy(context.matches[0].group(1), context.matches[0].group(2))
    await query.answer((change.warning or change.text.splitlines()[0])[:200], show_alert=bool(change.warning))
    if change.ok:
        await _refresh_keyboard(query, api)


async def on_awake_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    api, query = _api(context), update.callback_query
    assert query is not None and context.matches
    await query.answer(await api.set_awake(context.matches[0].group(1) == "on"))
    await _refresh_keyboard(query, api)


async def _refresh_keyboard(query: Any, api: CoreAPI) -> None:
    try:
        await query.edit_message_reply_markup(reply_markup=settings_keyboard(api))
    except BadRequest:
        pass  # "message is not modified": a replayed press set the same value again


async def on_other_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    _api(context).refused_button((query.data or "")[:64])
    await query.answer("That button is not valid.", show_alert=True)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One error handler: log it; tell the owner briefly when it was their update."""
    log.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_message is not None:
        try:
            await update.effective_message.reply_text("Something went wrong handling that; it is in the log.")
        except TelegramError:
            pass
