"""Start-up against a bare python-telegram-bot bot. Run: `python -m bench.startup_bench`.

From spawn to the first getUpdates that reaches the fake Bot API (tests/fakes/
telegram_api.py on 127.0.0.1), for:
  - a bare PTB Application (bench/bare_ptb.py: echo handler, nothing else),
  - `dispatch run` with Telegram alone,
  - `dispatch run` with Telegram + Slack (Socket Mode, fake Slack) + mail (aiosmtpd and
    Dovecot on loopback); for this one the time is still that of the first getUpdates, and
    the run counts only once the Slack socket is also open.
Each round runs the three one after the other, in a rotated order, each against fresh
servers and a fresh DISPATCH_HOME; ROUNDS rounds; the figure is the median, and the ratio
is median(Dispatch) / median(bare PTB) from the same run. Target: ratio <= 1.5.
Both include the interpreter start and every import up to polling.

Also reported, without a target: spawn to the bot's first answer. The owner's "/status"
is waiting at the fake before each bot starts; the bare bot echoes it, Dispatch answers
it from its core (no model call), so this one includes building the core, which Dispatch
does in a thread while its first getUpdates is already out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench.launch import compile_bytecode, OWNER, REPO, Servers, spawn_dispatch, stop

TARGET = 1.5


async def bare(tmp: Path, i: int) -> tuple[float, float]:
    async with Servers("telegram", tmp / f"bare{i}") as servers:
        servers.tg.send_message("/status", user_id=OWNER)
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "bench" / "bare_ptb.py"), cwd=tmp, env=servers.env(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            return await servers.polling(t0, proc), await servers.answered(t0, proc)
        finally:
            await stop(proc)


async def dispatch(kind: str, tmp: Path, i: int) -> tuple[float, float]:
    async with Servers(kind, tmp / f"{kind}{i}") as servers:
        servers.tg.send_message("/status", user_id=OWNER)
        t0 = time.monotonic()
        proc = await spawn_dispatch(servers.env(), tmp)
        try:
            return await servers.polling(t0, proc), await servers.answered(t0, proc)
        finally:
            await stop(proc)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    compile_bytecode()
    print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, loopback servers; "
          f"load average {os.getloadavg()[0]:.2f}")
    runs = {
        "bare PTB Application": lambda tmp, i: bare(tmp, i),
        "dispatch run, Telegram": lambda tmp, i: dispatch("telegram", tmp, i),
        "dispatch run, Telegram + Slack + mail": lambda tmp, i: dispatch("all", tmp, i),
    }
    polls: dict[str, list[float]] = {name: [] for name in runs}
    answers: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    with tempfile.TemporaryDirectory(prefix="dispatch-start-bench-") as tmp:
        for i in range(args.rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:  # interleaved, rotated
                poll, answer = await runs[name](Path(tmp), i)
                polls[name].append(poll)
                answers[name].append(answer)
    report(f"spawn -> first getUpdates, median of {args.rounds} interleaved rounds:", polls, TARGET)
    report("spawn -> first answer to a /status waiting at start (reported):", answers, None)


def report(title: str, times: dict[str, list[float]], target: float | None) -> None:
    names = list(times)
    base = statistics.median(times[names[0]])
    print(title)
    for name in names:
        med = statistics.median(times[name])
        each = ", ".join(f"{t * 1000:.0f}" for t in times[name])
        line = f"  {name:<40} {med * 1000:6.0f} ms   ({each})"
        if name != names[0]:
            line += f"   {med / base:.2f}x bare"
            if target is not None:
                line += f"   target <= {target}x  {'ok' if med / base <= target else 'MISS'}"
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
