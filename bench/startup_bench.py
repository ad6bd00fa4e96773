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

from bench.launch import compile_bytecode, REPO, Servers, spawn_dispatch, stop

TARGET = 1.5


async def bare(tmp: Path, i: int) -> float:
    async with Servers("telegram", tmp / f"bare{i}") as servers:
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "bench" / "bare_ptb.py"), cwd=tmp, env=servers.env(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            return await servers.polling(t0, proc)
        finally:
            await stop(proc)


async def dispatch(kind: str, tmp: Path, i: int) -> float:
    async with Servers(kind, tmp / f"{kind}{i}") as servers:
        t0 = time.monotonic()
        proc = await spawn_dispatch(servers.env(), tmp)
        try:
            return await servers.polling(t0, proc)
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
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    with tempfile.TemporaryDirectory(prefix="dispatch-start-bench-") as tmp:
        for i in range(args.rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:  # interleaved, rotated
                times[name].append(await runs[name](Path(tmp), i))
    base = statistics.median(times[names[0]])
    print(f"spawn -> first getUpdates, median of {args.rounds} interleaved rounds:")
    for name in names:
        med = statistics.median(times[name])
        each = ", ".join(f"{t * 1000:.0f}" for t in times[name])
        if name == names[0]:
            print(f"  {name:<40} {med * 1000:6.0f} ms   ({each})")
        else:
            ratio = med / base
            print(f"  {name:<40} {med * 1000:6.0f} ms   ({each})   {ratio:.2f}x bare   "
                  f"target <= {TARGET}x  {'ok' if ratio <= TARGET else 'MISS'}")


if __name__ == "__main__":
    asyncio.run(main())
