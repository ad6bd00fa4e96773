"""Telegram front end benchmark. Run: `python -m bench.telegram_bench`.

Everything talks HTTP on 127.0.0.1: the real python-telegram-bot Application polls the
fake Bot API (tests/fakes/telegram_api.py); the real core calls the fake Messages API.

1. First visible action (p99 < 100 ms): 200 messages, one at a time. From the moment an
   update is queued on the fake (available to the waiting long poll) to the arrival at
   the fake of the bot's first visible call for it (sendChatAction or sendMessage).
   The model answers at once, so this is Dispatch's own reaction time.
2. Start-up (< 1.5 s): `dispatch run` as a subprocess (no terminal), from spawn to the
   arrival of its first getUpdates at the fake; 5 runs, median and max. This includes
   the Python interpreter start and every import up to polling.
It reports and exits 0; a figure that misses its target is marked MISS.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from agent.core import Core
from bot.telegram.app import TelegramFrontEnd
from tests.conftest import build_test_registry, make_settings
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.telegram_api import FakeTelegram

OWNER = 1001
VISIBLE = {"sendchataction", "sendmessage"}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def first_visible_action(tmp: Path, n: int = 200) -> list[float]:
    model, tg = FakeAnthropic(), FakeTelegram()
    await model.start()
    await tg.start()
    model.respond_with(lambda req: {"text": "ok"})
    settings = make_settings(tmp, model.url, None, TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_URL=tg.url,
                             DISPATCH_TELEGRAM_OWNERS=str(OWNER))
    core = Core(settings, registry=build_test_registry())
    front = TelegramFrontEnd(core, poll_timeout=10)
    await front.start()
    await core.start()
    latencies = []
    try:
        for i in range(n + 5):  # the first 5 warm up
            seen = len(tg.calls)
            done = len([c for c in tg.calls_to("sendMessage") if c.params.get("text") == "ok"])
            t0 = time.monotonic()
            tg.send_message(f"task {i}")
            while True:
                visible = [c for c in tg.calls[seen:] if c.method.lower() in VISIBLE]
                if visible:
                    break
                await asyncio.sleep(0.0005)
            if i >= 5:
                latencies.append((visible[0].at - t0) * 1000)
            while len([c for c in tg.calls_to("sendMessage") if c.params.get("text") == "ok"]) <= done:
                await asyncio.sleep(0.002)
            model.requests.clear()
    finally:
        await core.stop()
        await front.stop()
        await core.model.aclose()
        core.store.close()
        await tg.stop()
        await model.stop()
    return latencies


async def startup(tmp: Path, runs: int = 5) -> list[float]:
    repo = Path(__file__).resolve().parents[1]
    times = []
    for i in range(runs):
        model, tg = FakeAnthropic(), FakeTelegram()
        await model.start()
        await tg.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "ANTHROPIC_", "TELEGRAM_"))}
        env.update(ANTHROPIC_API_KEY="sk-ant-bench", ANTHROPIC_BASE_URL=model.url, TELEGRAM_BOT_TOKEN=tg.token,
                   TELEGRAM_API_URL=tg.url, DISPATCH_TELEGRAM_OWNERS=str(OWNER), DISPATCH_TIMEZONE="UTC",
                   DISPATCH_HOME=str(tmp / f"home{i}"), PYTHONPATH=str(repo))
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.ops.cli", "run", cwd=tmp, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            while not tg.calls_to("getUpdates"):
                if proc.returncode is not None or time.monotonic() - t0 > 30:
                    raise RuntimeError("dispatch run did not start polling")
                await asyncio.sleep(0.002)
            times.append((tg.calls_to("getUpdates")[0].at - t0) * 1000)
        finally:
            proc.terminate()
            await proc.wait()
            await tg.stop()
            await model.stop()
    return times


async def main() -> None:
    for var in [v for v in os.environ if v.startswith(("DISPATCH_", "ANTHROPIC_", "TELEGRAM_"))]:
        del os.environ[var]
    warnings.filterwarnings("ignore")
    print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, loopback fakes; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="dispatch-tg-bench-") as tmp:
        lat = await first_visible_action(Path(tmp) / "a")
        start = await startup(Path(tmp))
    p50, p99 = pct(lat, 50), pct(lat, 99)
    print(f"1. update -> first visible action, {len(lat)} messages: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(lat):.1f} ms   target p99 < 100 ms  {'ok' if p99 < 100 else 'MISS'}")
    med = statistics.median(start)
    print(f"2. `dispatch run` spawn -> first getUpdates, {len(start)} runs: median {med:.0f} ms, "
          f"max {max(start):.0f} ms   target < 1500 ms  {'ok' if med < 1500 else 'MISS'}")


if __name__ == "__main__":
    asyncio.run(main())
