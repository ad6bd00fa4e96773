"""Telegram handlers: small module-level functions, as in python-telegram-bot's examples.

The core travels in `application.bot_data["core"]`. `guard` runs first (group -1)
for every update — messages and button presses alike — and stops everything that
is not the owner in a private chat. bot.telegram.app builds the application from these.
"""

from __future__ import annotations

import logging
import re
from html import escape
from typing import Any

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from agent import approvals, gate, owners
from agent.channel import Inbound
from agent.core import Core
from bot import views
from bot.telegram import desktop as tgdesktop
from bot.inbox import inbox_path
from bot.telegram.channel import card_html
from tools.registry import Effect

log = logging.getLogger("dispatch.telegram")

PLATFORM = "telegram"
MAX_DOWNLOAD = 20 * 1024 * 1024  # the Bot API's getFile limit
MAX_PAIR_TRIES = 5
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
    "Documents and photos you send are saved on the desktop and handed to the task.\n\n"
    "Anything that would leave the desktop (an email, a Slack post) comes back here as a draft "
    "with <b>Approve</b> / <b>Reject</b> / <b>Edit</b> buttons; nothing is sent unless you approve.\n\n"
    + "\n".join(f"/{c} — {escape(d)}" for c, d in COMMANDS)
)
_BUTTON = re.compile(r"([are]):(\d{1,9})")
_POLICY_BUTTON = re.compile(r"p:([A-Za-z0-9_.-]{1,40})")


def _core(context: ContextTypes.DEFAULT_TYPE) -> Core:
    return context.application.bot_data["core"]


def _by(update: Update) -> str:
    return f"{PLATFORM}:{update.effective_user.id}"  # type: ignore[union-attr]


def _origin(update: Update) -> str:
    return f"{PLATFORM}:{update.effective_chat.id}"  # type: ignore[union-attr]


# The guard -------------------------------------------------------------------------


async def guard(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Owner only, private chats only; everyone else one polite refusal, all logged."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or chat.type != ChatType.PRIVATE:
        raise ApplicationHandlerStop  # groups and channels are ignored outright
    core = _core(context)
    if owners.is_owner(core.store, PLATFORM, str(user.id), core.settings.telegram_owners):
        return
    msg = update.message
    if msg is not None and msg.text and msg.text.split()[0].split("@")[0] == "/pair":
        return  # a stranger may try to pair; the pair handler judges the code
    what = "button press" if update.callback_query else "message"
    core.store.log("refusal", f"telegram user {user.id} ({user.full_name}) refused: {what}", ok=False,
                   platform=PLATFORM, user=str(user.id), username=user.username or "")
    if update.callback_query is not None:
        await update.callback_query.answer("This button is not for you.")
    elif msg is not None and owners.first_refusal(core.store, PLATFORM, str(user.id)):
        await msg.reply_text("Sorry — this is a private assistant. It only works for its owner.")
    raise ApplicationHandlerStop


# Commands ---------------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_html(HELP)  # type: ignore[union-attr]


async def pair(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    core, user = _core(context), update.effective_user
    assert user is not None
    if owners.is_owner(core.store, PLATFORM, str(user.id), core.settings.telegram_owners):
        await update.effective_message.reply_text("You're already paired: this Dispatch works for you.")  # type: ignore[union-attr]
        return
    tries = context.application.bot_data.setdefault("pair_tries", {})
    if tries.get(user.id, 0) >= MAX_PAIR_TRIES:
        core.store.log("refusal", f"telegram user {user.id}: too many pairing attempts", ok=False, user=str(user.id))
        return
    code = " ".join(context.args or [])
    if code and owners.redeem(core.store, PLATFORM, str(user.id), user.full_name, code):
        await update.effective_message.reply_text(  # type: ignore[union-attr]
            "Paired ✓ — you are the owner of this Dispatch now. Send me a task, or /help.")
        return
    tries[user.id] = tries.get(user.id, 0) + 1
    core.store.log("refusal", f"telegram user {user.id}: wrong or expired pairing code", ok=False, user=str(user.id))
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        "That code is wrong or has expired. Run `dispatch pair` on the desktop and send /pair with the "
        "new code within 10 minutes." if code else
        "Send /pair followed by the code that `dispatch pair` prints on the desktop.")


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(views.status_text(_core(context).status()))  # type: ignore[union-attr]


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(await _core(context).cancel())  # type: ignore[union-attr]


async def pending(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The list, and fresh cards for the newest few so their buttons are at hand."""
    core = _core(context)
    rows = approvals.pending(core.store)
    await update.effective_message.reply_text(views.pending_text(rows))  # type: ignore[union-attr]
    for row in rows[-5:]:
        await core.router.new_card(row, _origin(update))


async def show_log(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    text = views.log_text(_core(context).store.recent_actions(25))
    await update.effective_message.reply_html(f"<pre>{escape(text[-3900:], quote=False)}</pre>")  # type: ignore[union-attr]


async def usage(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    core = _core(context)
    await update.effective_message.reply_text(views.usage_text(core.store, core.settings))  # type: ignore[union-attr]


def _policy_keyboard(core: Core) -> InlineKeyboardMarkup:
    policies = gate.current_policies(core.store, core.settings.policy_overrides)
    connectors = sorted({t.connector for t in core.registry.all()})
    rows = []
    for c in connectors:
        effective = {gate.decide(t, policies) for t in core.registry.all() if t.connector == c}
        shown = policies.get(c) or ("default: " + "/".join(sorted(effective)))
        rows.append([InlineKeyboardButton(f"{c}: {shown}", callback_data=f"p:{c}")])
    rows.append([tgdesktop.awake_button(core)])
    return InlineKeyboardMarkup(rows)


async def settings_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(  # type: ignore[union-attr]
        "Tap a connector to switch it: auto → ask → off.\n"
        "auto = runs · ask = draft for your approval · off = never offered",
        reply_markup=_policy_keyboard(_core(context)))


# Messages and files -------------------------------------------------------------------


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    core, msg = _core(context), update.message
    assert msg is not None and msg.text is not None
    replied = msg.reply_to_message
    found = approvals.find_by_message(core.store, PLATFORM, msg.chat_id, replied.message_id) if replied else None
    if found:
        row, ref = found
        purpose = ref.get("purpose")
        if purpose == "edit" and row.state == "pending":
            decision = await core.edit(row.id or 0, _by(update), msg.text)
            if not decision.won:
                await msg.reply_text(decision.message)
            return
        if row.state == "rejected" and not row.reason:
            await msg.reply_text((await core.give_reason(row.id or 0, _by(update), msg.text)).message)
            return
        text = f"About draft #{row.id} ({row.tool}, {row.state}): {msg.text}"
    else:
        text = msg.text
    await core.submit(Inbound(text, _origin(update)))


async def on_file(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A document or photo from the phone: saved to the inbox, handed to a task."""
    core, msg = _core(context), update.message
    assert msg is not None
    if msg.document is not None:
        item, name = msg.document, msg.document.file_name or f"document-{msg.message_id}"
    else:
        item, name = msg.photo[-1], f"photo-{msg.message_id}.jpg"  # the largest size
    size = item.file_size or 0
    if size > MAX_DOWNLOAD:
        await msg.reply_text(
            f"{name} is {size / 1024 / 1024:.0f} MB; Telegram lets bots download at most 20 MB. "
            "Put it in a folder Dispatch can read (DISPATCH_ROOTS) and tell me where it is.")
        return
    path = inbox_path(core.settings.home / "inbox", name)
    try:
        tg_file = await item.get_file()
        await tg_file.download_to_drive(path)
    except BadRequest as exc:
        await msg.reply_text(f"I couldn't download {name}: {exc.message}")
        return
    core.store.log("file_received", f"{path.name} from Telegram saved to {path}", path=str(path), size=size)
    caption = msg.caption or f"I sent you a file: {path.name}"
    await core.submit(Inbound(caption, _origin(update), files=[str(path)]))


async def unsupported(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    msg = update.message
    assert msg is not None
    kind = next((k for k in ("voice", "audio", "video", "video_note", "sticker", "animation", "location",
                             "contact", "poll") if getattr(msg, k, None)), "this kind of message")
    await msg.reply_text(f"I can't work with {kind.replace('_', ' ')} messages yet. "
                         "Send text, a document or a photo.")


# Buttons ------------------------------------------------------------------------------


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    core, query = _core(context), update.callback_query
    assert query is not None
    data = query.data or ""
    policy = _POLICY_BUTTON.fullmatch(data)
    if policy:
        await _toggle_policy(core, query, policy.group(1))
        return
    if data == tgdesktop.AWAKE_BUTTON:
        await tgdesktop.toggle_awake(core, query)
        await query.edit_message_reply_markup(reply_markup=_policy_keyboard(core))
        return
    m = _BUTTON.fullmatch(data)
    if not m:
        core.store.log("refusal", f"invalid button data from the owner: {data[:64]!r}", ok=False)
        await query.answer("That button is not valid.", show_alert=True)
        return
    action, n = m.group(1), int(m.group(2))
    row = approvals.get(core.store, n)
    if row is None:
        core.store.log("refusal", f"button for a draft that does not exist: #{n}", ok=False)
        await query.answer(f"There is no draft #{n}.", show_alert=True)
        return
    if row.state != "pending" or approvals.is_due(row):
        if approvals.is_due(row):
            await core.expire_now(n)
            row = approvals.get(core.store, n) or row
        await query.answer(f"Draft #{n} was already decided: {views.OUTCOME.get(row.state, row.state)}.",
                           show_alert=True)
        await _redraw(core, query, n)
        return
    if action == "a":
        await query.answer("Approved — sending…")
        await core.approve(n, _by(update))  # the card is redrawn with the outcome by the core
    elif action == "r":
        await query.answer("Rejected — nothing was sent.")
        decision = await core.reject(n, _by(update))
        if decision.won:
            await _prompt(core, query, n, "reason",
                          f"Draft #{n} rejected. Reply to this with what to change and I'll revise it — "
                          "or ignore this to leave it.")
    else:
        await query.answer()
        await _prompt(core, query, n, "edit", f"Reply to this with the new text for draft #{n}. "
                                              "It replaces the whole text; you'll get a new draft to approve.")


async def _prompt(core: Core, query: Any, n: int, purpose: str, text: str) -> None:
    msg = await query.message.reply_text(text, reply_markup=ForceReply(selective=True))
    approvals.add_card(core.store, n, {"platform": PLATFORM, "chat_id": msg.chat_id, "message_id": msg.message_id,
                                       "kind": "prompt", "purpose": purpose})


async def _redraw(core: Core, query: Any, n: int) -> None:
    """A press on a stale card: show its outcome and remove the buttons."""
    row = approvals.get(core.store, n)
    if row is None or query.message is None:
        return
    try:
        await query.edit_message_text(card_html(core.router.card(row)), parse_mode=ParseMode.HTML, reply_markup=None)
    except BadRequest:
        pass  # already showing it


async def _toggle_policy(core: Core, query: Any, connector: str) -> None:
    known = {t.connector for t in core.registry.all()}
    if connector not in known:
        await query.answer("That setting no longer exists.", show_alert=True)
        return
    current = gate.current_policies(core.store, core.settings.policy_overrides).get(connector)
    nxt = {"auto": "ask", "ask": "off", "off": "auto"}.get(current or "", "ask")
    if any(t.connector == connector and t.effect == Effect.CONTROL for t in core.registry.all()):
        nxt = "off" if current == "auto" else "auto"  # control has no "ask" (see agent.desktop)
    gate.set_policy(core.store, connector, nxt)
    await query.answer(f"{connector}: {nxt}")
    await query.edit_message_reply_markup(reply_markup=_policy_keyboard(core))


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One error handler: log it; tell the owner briefly when it was their update."""
    log.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_message is not None:
        try:
            await update.effective_message.reply_text("Something went wrong handling that; it is in the log.")
        except TelegramError:
            pass
