"""Core benchmark: the real `agent.core.Core` and `anthropic.AsyncAnthropic` client against the
loopback fake Messages API (tests/fakes/anthropic_api.py). Run: `python -m bench.core_bench`.
It reports and exits 0; a figure that misses its target is marked MISS. Loopback only.

1. Overhead per model step (p50 < 5 ms): 20 tasks x 10 steps of `list_folder` (10 files) and a
   final answer, after a warm-up task. `core.model.client.messages.create` is timed; a step's
   overhead is from one call's return to the next call's start (usage record, storing the
   turn, the gate, storing the result, policies, the next request) less the tool's own run
   time (printed separately, as is the figure with the tool included). The fake shares
   the event loop, so its work counts as round trip. Also: early vs late overhead, full-GC
   pauses, round trip (fake handler's share) and a bare one-line round trip, and mean ms per
   model call in the main parts of the loop (functions wrapped at run time, this process only).
2. Context build, 10,000-message thread (p50 < 30 ms): 2,500 cycles of user text / assistant
   text+tool_use / user tool_result / assistant text (50-2,000 chars) via `store.append_message`,
   no summary; `context.build_request` timed 100 times after 3 warm-ups with the default budget
   (context_tokens = 60,000), and `select_window` alone.
3. Base prompt (< 3,000 tokens): tools + system of a one-turn task's first request, in chars and
   chars/4 of compact JSON (the fake's estimate). anthropic 2.x has no local tokenizer
   (`messages.count_tokens` is an API call the fake lacks); the real API also adds its own
   tool-use system prompt.
4. Cache-read share, 30-turn thread (>= 80 % from turn 3): 30 tasks, each a tool step then an
   answer, ~200-char requests; usage from the `model_call` table; share = cache_read / (input +
   cache_write + cache_read). The fake caches with min_cache_tokens=1024 (Sonnet's minimum).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import random
import socket
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from sqlmodel import select

from agent import context, gate
from agent.channel import Inbound
from agent.core import Core
from agent.model import Model
from store.db import Store, estimate_tokens
from store.models import Message, ModelCall
from tests.conftest import RecordingChannel, _guarded_connect, make_settings
from tests.fakes.anthropic_api import FakeAnthropic
from tools.registry import Tool
from tools.catalogue import default_registry

WORDS = ("invoice report quarterly budget meeting draft folder signups tracker memo deck client "
         "review march april figures revenue summary table contract spreadsheet the a of to and").split()
ROWS: list[tuple[str, str, str, str]] = []  # figure, value, target, ok/MISS
GC2: list[float] = []  # full (generation 2) garbage collections, ms each


def _gc_watch(phase: str, info: dict[str, int], _t: list[float] = [0.0]) -> None:
    if info["generation"] == 2 and phase == "start":
        _t[0] = time.perf_counter()
    elif info["generation"] == 2:
        GC2.append((time.perf_counter() - _t[0]) * 1000)


def gc_note(since: int) -> str:
    new = GC2[since:]
    return f"{len(new)} full GC pauses, max {max(new):.0f} ms" if new else "no full GC pause"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n // 5 + 1))[:n].strip() + "."


def row(figure: str, value: str, target: str, ok: bool) -> None:
    ROWS.append((figure, value, target, "ok" if ok else "MISS"))


class Channel(RecordingChannel):  # says when a task is over (its progress line closes)
    def __init__(self) -> None:
        super().__init__()
        self.done = asyncio.Event()

    async def progress(self, origin: str, task_id: int, text: str, *, done: bool = False) -> None:
        await super().progress(origin, task_id, text, done=done)
        if done:
            self.done.set()


async def start_core(tmp: Path, fake: FakeAnthropic) -> tuple[Core, Channel, Path, list]:
    """A real Core (default tools) on a temp home, its SDK calls timed into `spans`."""
    roots = tmp / "files"
    roots.mkdir(parents=True)
    for i in range(10):
        (roots / f"report-{i:02d}.txt").write_text("x" * (100 + 150 * i))
    core, channel, spans = Core(make_settings(tmp, fake.url, roots)), Channel(), []
    core.attach(channel)
    sdk = core.model.client.messages  # a cached_property: one resource object per client
    real_create = sdk.create

    async def timed_create(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await real_create(*args, **kw)
        finally:
            spans.append((t0, time.perf_counter()))

    sdk.create = timed_create  # type: ignore[method-assign]
    await core.start()
    return core, channel, roots, spans


async def stop_core(core: Core, fake: FakeAnthropic) -> None:
    await core.stop()
    await core.model.aclose()
    core.store.close()
    await fake.stop()


async def run_task(core: Core, channel: Channel, text: str) -> int:
    channel.done.clear()
    task = await core.submit(Inbound(text, "console:local"))
    assert task is not None and task.id is not None
    await asyncio.wait_for(channel.done.wait(), 60)
    return task.id


def wrap(owner: Any, name: str, label: str, buckets: dict[str, list[float]]) -> None:
    """Time every call of owner.name into buckets[label] (this process only; no file changes)."""
    fn, out = getattr(owner, name), buckets.setdefault(label, [])

    async def atimed(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await fn(*a, **k)
        finally:
            out.append(time.perf_counter() - t0)

    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            out.append(time.perf_counter() - t0)

    setattr(owner, name, atimed if asyncio.iscoroutinefunction(fn) else timed)


async def fig_overhead(tmp: Path) -> None:
    fake, buckets = FakeAnthropic(), {}  # type: ignore[var-annotated]
    wrap(fake, "_handle", "fake", buckets)  # before start(): aiohttp routes to this attribute
    await fake.start()
    core, channel, roots, spans = await start_core(tmp, fake)

    async def task(steps: int) -> list[tuple[float, float]]:
        for _ in range(steps):
            fake.reply(tool_uses=[("list_folder", {"path": str(roots)})])
        fake.reply("Listed the folder ten times.")
        first = len(spans)
        fake.requests.clear()  # the fake keeps every request; don't let that pile up
        await run_task(core, channel, "List my files folder, please.")
        return spans[first:]

    await task(3)  # warm-up
    buckets["fake"].clear()
    for owner, name, label in ((context, "build_request", "build_request"), (Model, "record", "usage record"),
                               (Tool, "call", "tool")):
        wrap(owner, name, label, buckets)
    overhead, rtt, per_task, gc_mark, with_tool = [], [], [], len(GC2), []
    for _ in range(20):
        tool_mark = len(buckets["tool"])
        s = await task(10)
        gaps = [(s[j + 1][0] - s[j][1]) * 1000 for j in range(10)]
        tool_ms = [t * 1000 for t in buckets["tool"][tool_mark:tool_mark + 10]]
        with_tool += gaps
        # The framework's own share: the gap between model calls less the tool's own run time.
        per_task.append([g - t for g, t in zip(gaps, tool_ms)])
        overhead += per_task[-1]
        rtt += [(b - a) * 1000 for a, b in s]
    fake_ms, gcs = sum(buckets.pop("fake")) * 1000 / len(rtt), gc_note(gc_mark)
    with core.store.session() as sess:
        n_msgs = len(sess.exec(select(Message.id)).all())
    first = len(spans)
    for _ in range(50):
        fake.reply("ok")
        await core.model.client.messages.create(model="claude-sonnet-4-6", max_tokens=16,
                                                messages=[{"role": "user", "content": "hi"}])
    bare = [(b - a) * 1000 for a, b in spans[first:]]
    await stop_core(core, fake)

    p50, p99 = pct(overhead, 50), pct(overhead, 99)
    print(f"1. Overhead per step ({len(overhead)} steps), excluding the model call and the tool's own run: "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, mean {statistics.mean(overhead):.2f} ms; {gcs}")
    print(f"   including the tool (list_folder of 10 files): p50 {pct(with_tool, 50):.2f} ms, p99 {pct(with_tool, 99):.2f} ms")
    print(f"   grows with the thread: p50 {pct(sum(per_task[:5], []), 50):.2f} ms in tasks 1-5, "
          f"{pct(sum(per_task[-5:], []), 50):.2f} ms in tasks 16-20 (thread ends at {n_msgs} messages)")
    print(f"   SDK round trip to the fake: p50 {pct(rtt, 50):.2f} ms in the loop (the fake's handler: "
          f"mean {fake_ms:.2f} ms), {pct(bare, 50):.2f} ms for a bare one-line request")
    parts = ", ".join(f"{k} {sum(v) * 1000 / len(rtt):.2f}" for k, v in buckets.items() if k != "fake")
    print(f"   mean ms per model call spent in: {parts}")
    row("1. overhead/step p50", f"{p50:.2f} ms (p99 {p99:.2f})", "< 5 ms", p50 < 5)


async def fig_context(tmp: Path) -> None:
    settings = make_settings(tmp, "http://127.0.0.1:9")
    store, registry = Store(settings.db_url), default_registry()
    tid, rng, t0 = store.thread_id(), random.Random(7), time.perf_counter()
    for i in range(2500):
        text = [prose(rng, rng.randint(50, 2000)) for _ in range(4)]
        uid, path = f"toolu_{i:05d}", f"/home/sam/Documents/f{i}.txt"
        store.append_message(tid, "user", [{"type": "text", "text": text[0]}])
        store.append_message(tid, "assistant", [{"type": "text", "text": text[1]}, {
            "type": "tool_use", "id": uid, "name": "read_text", "input": {"path": path}}])
        store.append_message(tid, "user", [{"type": "tool_result", "tool_use_id": uid, "content": text[2],
                                             "is_error": False}], kind="tool_results")
        store.append_message(tid, "assistant", [{"type": "text", "text": text[3]}])
    fill = time.perf_counter() - t0
    policies = gate.current_policies(store, settings.policy_overrides)
    times, windows, gc_mark = [], [], len(GC2)
    for n in range(103):
        t0 = time.perf_counter()
        _, window = context.build_request(settings, store, registry, tid, policies)
        t1 = time.perf_counter()
        context.select_window(store, tid, settings.context_tokens)
        if n >= 3:  # three warm-up runs
            times.append((t1 - t0) * 1000)
            windows.append((time.perf_counter() - t1) * 1000)
    store.close()
    p50, p99 = pct(times, 50), pct(times, 99)
    print(f"2. Context build, 10,000 messages (filled in {fill:.1f} s, {10000 / fill:.0f} appends/s): "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms; window {len(window.rows)} messages, "
          f"~{sum(estimate_tokens(r.content) for r in window.rows):,} of {settings.context_tokens:,} tokens")
    print(f"   of which select_window (reads the thread): p50 {pct(windows, 50):.2f} ms; {gc_note(gc_mark)}")
    row("2. build_request 10k msgs p50", f"{p50:.2f} ms (p99 {p99:.2f})", "< 30 ms", p50 < 30)


def compact_chars(blocks: list[dict[str, Any]]) -> int:
    """Characters as the fake counts them: compact, sorted JSON, cache_control left out."""
    return sum(len(json.dumps({k: v for k, v in b.items() if k != "cache_control"},
                              sort_keys=True, separators=(",", ":"))) for b in blocks)


async def fig_base_prompt(tmp: Path) -> None:
    fake = FakeAnthropic()
    await fake.start()
    core, channel, _, _ = await start_core(tmp, fake)
    fake.reply("Hello Sam!")
    await run_task(core, channel, "Hi, are you there?")
    await stop_core(core, fake)
    tools, system = fake.requests[0].get("tools", []), fake.requests[0]["system"]
    tc, sc = compact_chars(tools), compact_chars(system)
    tokens = (tc + sc) // 4
    print(f"3. Base prompt: {len(tools)} tools {tc:,} chars (~{tc // 4:,} tokens) + system {sc:,} chars "
          f"(~{sc // 4:,} tokens) = {tc + sc:,} chars, ~{tokens:,} tokens (chars/4)")
    print("   (no local tokenizer in anthropic 2.x; the real API adds its tool-use system prompt)")
    row("3. base prompt (tools+system)", f"~{tokens:,} tokens ({tc + sc:,} chars)", "< 3,000", tokens < 3000)


async def fig_cache(tmp: Path) -> None:
    fake = FakeAnthropic(min_cache_tokens=1024)
    await fake.start()
    core, channel, roots, _ = await start_core(tmp, fake)
    rng, shares, read_3on, total_3on = random.Random(11), [], 0, 0
    for turn in range(30):
        use = ("read_text", {"path": str(roots / f"report-{turn % 10:02d}.txt")}) if turn % 2 else \
            ("list_folder", {"path": str(roots)})
        fake.reply("Let me check.", tool_uses=[use])
        fake.reply(prose(rng, 300))
        task_id = await run_task(core, channel, prose(rng, rng.randint(170, 230)))
        with core.store.session() as s:
            calls = list(s.exec(select(ModelCall).where(ModelCall.task_id == task_id)))
        read = sum(c.cache_read_input_tokens for c in calls)
        total = sum(c.input_tokens + c.cache_creation_input_tokens + c.cache_read_input_tokens for c in calls)
        shares.append(read / total if total else 0.0)
        if turn >= 2:
            read_3on, total_3on = read_3on + read, total_3on + total
    await stop_core(core, fake)
    agg = read_3on / total_3on
    print("4. Cache-read share per turn (fake min_cache_tokens=1024):")
    for i in range(0, 30, 10):
        print(f"   turns {i + 1:2d}-{i + 10:2d}: " + " ".join(f"{s * 100:3.0f}%" for s in shares[i:i + 10]))
    print(f"   turns 3-30: {agg * 100:.1f}% of {total_3on:,} input tokens read from cache")
    row("4. cache-read share, turns 3-30", f"{agg * 100:.1f}% (min_cache_tokens=1024)", ">= 80%", agg >= 0.8)


async def main() -> None:
    for var in list(os.environ):  # the benchmark's settings are its own
        if var.startswith(("DISPATCH_", "ANTHROPIC_")) or var == "DATABASE_URL":
            del os.environ[var]
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]  # loopback only
    gc.callbacks.append(_gc_watch)
    print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()} ({platform.system()}, "
          f"{platform.machine()}), anthropic SDK against tests/fakes/anthropic_api.py on 127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-") as tmp:
        for n, fig in enumerate((fig_overhead, fig_context, fig_base_prompt, fig_cache)):
            gc.collect()  # start each figure clean; freeze as `dispatch run` does after start-up
            gc.freeze()
            await fig(Path(tmp) / str(n))
    widths = [max(len(r[i]) for r in ROWS) for i in range(3)]
    print(f"\n{'figure':<{widths[0]}}  {'value':<{widths[1]}}  target")
    for figure, value, target, status in ROWS:
        print(f"{figure:<{widths[0]}}  {value:<{widths[1]}}  {target:<{widths[2]}}  {status}")


if __name__ == "__main__":
    asyncio.run(main())
