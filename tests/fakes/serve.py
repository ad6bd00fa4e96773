"""A loopback fake served on its own, for checks outside pytest (.ci/quickstart):

    python -m tests.fakes.serve anthropic URL_FILE

starts the fake Messages API on 127.0.0.1, writes its base URL to URL_FILE, and
answers every request with one fixed text until it is stopped (SIGTERM/SIGINT).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.fakes.anthropic_api import FakeAnthropic

ANSWER = "Hello from the fake model."


async def serve(url_file: Path) -> None:
    fake = FakeAnthropic()
    fake.respond_with(lambda body: {"text": ANSWER})
    await fake.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    url_file.write_text(fake.url)
    try:
        await stop.wait()
    finally:
        await fake.stop()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "anthropic":
        sys.exit("usage: python -m tests.fakes.serve anthropic URL_FILE")
    asyncio.run(serve(Path(sys.argv[2])))
