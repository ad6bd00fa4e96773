"""Where files from the phone land: DISPATCH_HOME/inbox/<date>/, shared by every front end,
and how they are fetched: network errors and server errors (5xx, 429) are tried again
with back-off; a final failure becomes one sentence naming the file and what to do."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable

log = logging.getLogger("dispatch.inbox")

RETRY_DELAYS = (1.0, 3.0)  # seconds before the 2nd and 3rd tries
MAX_RETRY_AFTER = 30.0  # a server's "retry after" is honoured up to this


def inbox_path(inbox: Path, name: str) -> Path:
    """A new file in today's inbox folder; a name from the phone never escapes it, and
    never replaces an earlier file (`report (2).pdf`)."""
    folder = inbox / datetime.now().strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.\- ]+", "_", Path(name).name).strip(". ") or "file"
    path, n = folder / safe, 2
    while path.exists():
        path, n = folder / f"{Path(safe).stem} ({n}){Path(safe).suffix}", n + 1
    return path


def transient(exc: BaseException) -> float | None:
    """How long to wait before trying again after `exc` (0 = the usual back-off), or
    None when trying again cannot help (a refusal: bad request, forbidden, too big)."""
    from telegram.error import BadRequest, NetworkError, RetryAfter

    if isinstance(exc, RetryAfter):  # 429 from the Bot API
        ra = exc.retry_after
        return min(ra.total_seconds() if hasattr(ra, "total_seconds") else float(ra), MAX_RETRY_AFTER)
    if isinstance(exc, BadRequest):  # a NetworkError subclass in PTB, but a final answer
        return None
    if isinstance(exc, NetworkError):  # PTB: connection errors, timeouts and any 5xx
        return 0.0
    # Slack's file server, through aiohttp. Not imported here: with Telegram alone it is not
    # loaded at all, and an aiohttp error cannot exist before aiohttp is.
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
        return 0.0 if exc.status >= 500 or exc.status == 429 else None
    if aiohttp is not None and isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return 0.0
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return 0.0
    return None


async def download_with_retry(fetch: Callable[[Path], Awaitable[object]], path: Path, name: str, *,
                              where: str = "Telegram", attempts: int = 3) -> str | None:
    """Run `fetch(path)` (which downloads the file to `path`) until it works, at most
    `attempts` times, waiting between tries. None when the file is saved; otherwise the
    sentence to send the owner (a partial file is removed, nothing else is started)."""
    problem = ""
    for attempt in range(attempts):
        try:
            await fetch(path)
            return None
        except Exception as exc:  # classified below; anything unknown is final, not retried blindly
            path.unlink(missing_ok=True)
            wait = transient(exc)
            problem = _plain(exc)
            if wait is None:
                return f"I couldn't download {name} from {where}: {problem}. Nothing was started."
            log.warning("download of %s from %s failed (try %d of %d): %s", name, where, attempt + 1, attempts,
                        problem)
            if attempt + 1 < attempts:
                await asyncio.sleep(max(wait, RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]))
    return (f"I couldn't download {name} from {where} ({problem}; tried {attempts} times). Nothing was "
            "started; send the file again in a minute.")


def _plain(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = str(text).split(". Parsing the server response")[0]  # PTB quotes a proxy's whole HTML page
    text = re.sub(r"<[^>]+>", " ", str(text))  # a proxy's HTML error page
    text = " ".join(text.split())
    return text[:200] or type(exc).__name__
