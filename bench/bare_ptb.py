"""The baseline for bench/startup_bench.py: a bare python-telegram-bot Application that
echoes text messages, polling the Bot API at TELEGRAM_API_URL with TELEGRAM_BOT_TOKEN.
Nothing else (no store, no model, no tools): what any PTB bot pays to start."""

from __future__ import annotations

import os

from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message is not None and update.effective_message.text:
        await update.effective_message.reply_text(update.effective_message.text)


def main() -> None:
    api = os.environ["TELEGRAM_API_URL"].rstrip("/")
    app = (Application.builder().token(os.environ["TELEGRAM_BOT_TOKEN"])
           .base_url(f"{api}/bot").base_file_url(f"{api}/file/bot").build())
    app.add_handler(MessageHandler(filters.TEXT, echo))
    app.run_polling(allowed_updates=["message", "callback_query"], poll_interval=0.0)


if __name__ == "__main__":
    main()
