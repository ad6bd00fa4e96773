"""Telegram commands for the desktop itself: /awake, /computer, /screenshot, and the
keep-awake button in /settings. The words come from agent.desktop, shared with the
terminal. Like every handler, these run only after the owner guard (bot.telegram.handlers).
"""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardButton, Update
from telegram.ext import ContextTypes

from agent import desktop
from agent.core import Core
from tools.registry import ToolError

AWAKE_BUTTON = "k:awake"


def _core(context: ContextTypes.DEFAULT_TYPE) -> Core:
    return context.application.bot_data["core"]


async def awake(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    text = await desktop.awake_command(_core(context), " ".join(context.args or []))
    await update.effective_message.reply_text(text)  # type: ignore[union-attr]


async def computer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    text = await desktop.computer_command(_core(context), " ".join(context.args or []))
    await update.effective_message.reply_text(text)  # type: ignore[union-attr]


async def screenshot(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The current screen, as a file (full resolution; a photo would be recompressed)."""
    core = _core(context)
    origin = f"telegram:{update.effective_chat.id}"  # type: ignore[union-attr]
    try:
        path = await desktop.screenshot(core, origin)
    except ToolError as exc:
        await update.effective_message.reply_text(f"No screenshot: {exc}")  # type: ignore[union-attr]
        return
    if await core.router.file(origin, path, "The desktop's screen now") is None:
        await update.effective_message.reply_text(f"The screenshot could not be sent; it is at {path}.")  # type: ignore[union-attr]


def awake_button(core: Core) -> InlineKeyboardButton:
    st = core.awake.status()
    shown = "off" if not st.wanted else ("on, active" if st.active else "on, NOT active")
    return InlineKeyboardButton(f"keep-awake: {shown}", callback_data=AWAKE_BUTTON)


async def toggle_awake(core: Core, query: Any) -> str:
    """The /settings button: flip it, and tell the truth about the result."""
    status = await core.awake.set(not core.awake.wanted())
    short = "off" if not status.wanted else ("on" if status.active else "on, but NOT active — see /awake")
    await query.answer(f"keep-awake: {short}")
    return status.text()
