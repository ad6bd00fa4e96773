"""Idle memory of `dispatch run` with every connector configured. Run: `python -m bench.memory_bench`.

`dispatch run` (no terminal) starts as a subprocess with Telegram, Slack (Socket Mode)
and mail (SMTP on aiosmtpd, IMAP on Dovecot) configured, all on loopback (see
bench/launch.py). Once it polls Telegram and holds a Slack socket, the benchmark waits
for start-up to settle (the model warm-up, the scheduler, the control socket; 8 s),
then reads RSS and PSS of the whole process tree from /proc/PID/smaps_rollup, three
times a second apart, and reports the last. Target: < 100 MB. Then it reads the
process's CPU time (every thread's, from /proc/PID/task/*/schedstat) over IDLE_CPU_S seconds of idling:
the whole of Dispatch at rest (long polls, the Slack socket, the file watcher, the
worker's look for work), reported.

A second run with `python -X importtime` lists what was imported by then: the top-level
packages by import time (self time summed per package) and how many modules in all.
`--telegram` measures with Telegram alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

from bench.launch import compile_bytecode, Servers, spawn_dispatch, stop, tree_memory

SETTLE = 8.0
TARGET_MB = 100
IDLE_CPU_S = 30.0


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of pid so far, in ns steps (/proc/PID/task/*/schedstat);
    utime + stime from /proc/PID/stat count in 10 ms ticks, too coarse for 0.1 % of 30 s."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


async def idle_memory(kind: str, tmp: Path) -> tuple[float, float, int, float, float]:
    async with Servers(kind, tmp / "home-mem") as servers:
        t0 = time.monotonic()
        proc = await spawn_dispatch(servers.env(), tmp)
        try:
            start = await servers.polling(t0, proc)
            await asyncio.sleep(SETTLE)
            for _ in range(3):
                rss, pss, n = tree_memory(proc.pid)
                await asyncio.sleep(1)
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(IDLE_CPU_S)
            idle_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0) * 100
            if proc.returncode is not None:
                raise RuntimeError("dispatch run exited while idle")
        finally:
            await stop(proc)
    return rss, pss, n, start, idle_cpu


async def import_profile(kind: str, tmp: Path) -> tuple[list[tuple[str, int]], int, set[str]]:
    log = tmp / "importtime.txt"
    async with Servers(kind, tmp / "home-imp") as servers:
        with log.open("wb") as err:
            t0 = time.monotonic()
            proc = await spawn_dispatch(servers.env(), tmp, "-X", "importtime", stderr=err)
            try:
                await servers.polling(t0, proc)
                await asyncio.sleep(SETTLE)
            finally:
                await stop(proc)
    per_package: dict[str, int] = defaultdict(int)
    modules: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(\S.*)$", line)
        if m:
            name = m.group(3).strip()
            modules.add(name)
            per_package[name.split(".")[0]] += int(m.group(1))
    top = sorted(per_package.items(), key=lambda kv: -kv[1])
    return top, len(modules), {n.split(".")[0] for n in modules}


HEAVY = ("openpyxl", "docx", "pptx", "pypdf", "PIL", "mss", "pyautogui", "googleapiclient", "google",
         "mcp", "slack_bolt", "slack_sdk", "telegram", "faster_whisper", "numpy", "watchfiles", "lxml")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--telegram", action="store_true", help="Telegram alone (default: every connector)")
    parser.add_argument("--top", type=int, default=15, help="how many packages to list by import time")
    args = parser.parse_args()
    kind = "telegram" if args.telegram else "all"
    warnings.filterwarnings("ignore")
    compile_bytecode()
    print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, loopback servers; "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="dispatch-mem-bench-") as tmp:
        rss, pss, n, start, idle_cpu = await idle_memory(kind, Path(tmp))
        top, count, packages = await import_profile(kind, Path(tmp))
    what = "Telegram" if kind == "telegram" else "Telegram + Slack + mail"
    print(f"idle `dispatch run` ({what}), {n} process(es), {SETTLE:.0f} s after polling began "
          f"(polling at {start * 1000:.0f} ms): RSS {rss:.1f} MB, PSS {pss:.1f} MB   "
          f"target < {TARGET_MB} MB  {'ok' if rss < TARGET_MB else 'MISS'}")
    print(f"idle CPU of the whole process over {IDLE_CPU_S:.0f} s: {idle_cpu:.3f} % of one core (reported)")
    print(f"imported at idle: {count} modules; heavy packages present: "
          f"{', '.join(h for h in HEAVY if h in packages) or 'none'}")
    print(f"top {args.top} packages by import time (self time summed, ms):")
    for name, us in top[:args.top]:
        print(f"  {name:<24} {us / 1000:7.1f}")


if __name__ == "__main__":
    asyncio.run(main())
