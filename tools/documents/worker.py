"""Parsing documents in separate processes, with a memory cap and a time cap.

A crafted document can cost far more than its size: a 59 KB .docx grew a process by
174 MB, a 4.7 KB .xlsx ran for an hour. So no document is parsed in Dispatch's own
process. Parses run in worker processes (`python -m tools.documents.worker`, a clean
interpreter: never a fork of Dispatch's threaded process) that:
- may use at most `MEMORY_BYTES` of address space (RLIMIT_AS): past it, allocations
  fail and the worker dies, not Dispatch (and not the desktop);
- are killed after `SECONDS` of wall time per parse (RLIMIT_CPU backs that up);
- are killed when the caller goes away: `/cancel` cancels the awaiting task, which
  kills the worker (`run_async`); shutdown calls `kill_all`; and if Dispatch dies,
  the kernel kills them (PR_SET_PDEATHSIG on Linux) or they see their input close;
- run at a lower CPU priority (nice 10), so the desktop stays responsive.

Workers are kept for reuse (an idle pool of `POOL` at most): a fresh interpreter with
the format libraries costs ~0.7 s, which the indexer would otherwise pay per file.
A worker is retired after `REUSE` parses or once it has grown past `RETIRE_RSS`, and
one that broke a parse is never reused. Because a reused worker carries what earlier
parses left in its memory, a parse that runs out of memory or crashes in a reused
worker is tried once more in a fresh one before the file is blamed (one that is too
slow is not: earlier parses cannot make it slow).

What the caller learns: the text; a ToolError in words (damaged, password-protected,
a zip bomb refused); `ParseBroke` when the file broke the parse (out of memory, too
slow, a crash) — the caller marks the file so it is not tried again until it changes;
or `ParseStopped` when we killed it (cancel, shutdown), which says nothing about it.

Workers get a minimal environment (no API keys, no mail password). POSIX only (Linux,
macOS); macOS may not enforce RLIMIT_AS, and there the zip checks, the time cap and
the kill on cancel are what hold.

Protocol: one JSON request line on the worker's stdin, one JSON answer line on the
stdout it was started with (the worker points its own fd 1 at stderr, so nothing a
library prints can corrupt the answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from tools.registry import ToolError

MEMORY_BYTES = 512 * 1024 * 1024
SECONDS = 60.0
NICENESS = 10
POOL = 2  # idle workers kept
REUSE = 50  # parses per worker
RETIRE_RSS = 256 * 1024 * 1024
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `tools`
_ENV_KEPT = {"PATH", "HOME", "TMPDIR", "TEMP", "TMP", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONHOME",
             "VIRTUAL_ENV", "SYSTEMROOT"}

_lock = threading.Lock()
_idle: list["Worker"] = []
_busy: set["Worker"] = set()


class ParseBroke(ToolError):
    """The file broke the parse (memory, time, a crash): not tried again until it changes."""


class ParseTimedOut(ParseBroke):
    """Too slow: the worker's earlier parses cannot be the cause, so it is not retried."""


class ParseStopped(ToolError):
    """We stopped the parse (cancel or shutdown): says nothing about the file."""


class Worker:
    """One worker process (the parent's handle on it)."""

    def __init__(self) -> None:
        # Only what an interpreter needs: the worker reads hostile files, so it gets none of
        # Dispatch's secrets (API keys, the mail password) in its environment.
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.documents.worker", str(MEMORY_BYTES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            cwd=_PACKAGE_ROOT, close_fds=True,
        )
        self.uses = 0
        self.rss = 0
        self.stopped = False  # killed on purpose (cancel, shutdown)
        self.killed = False

    def alive(self) -> bool:
        return not self.killed and self.proc.poll() is None

    def kill(self, *, on_purpose: bool = False) -> None:
        self.stopped = self.stopped or on_purpose
        self.killed = True
        with contextlib.suppress(OSError):
            self.proc.kill()

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]

    def parse(self, path: Path, max_chars: int, seconds: float) -> str:
        """One parse, waiting in this thread; the worker is killed on a timeout."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.uses += 1
        request = json.dumps({"path": str(path), "max_chars": max_chars, "seconds": seconds}) + "\n"
        try:
            self.proc.stdin.write(request.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._outcome(path, None, False, seconds)
        answer, timed_out = _read_line(self.proc.stdout, seconds)
        if timed_out:
            self.kill()
        return self._outcome(path, answer, timed_out, seconds)

    def _outcome(self, path: Path, answer: bytes | None, timed_out: bool, seconds: float) -> str:
        if self.stopped:
            raise ParseStopped(f"Reading {path.name} was stopped.")
        if timed_out:
            raise ParseTimedOut(f"it took longer than {seconds:g} s to read, so reading it was stopped")
        try:
            message = json.loads(answer or b"")
        except ValueError:
            self.kill()
            code = self.proc.wait(5)
            how = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
                   and -code in signal.valid_signals() else f"exit code {code}")
            raise ParseBroke(f"it crashed the document reader ({how}; it may have needed more than "
                             f"{MEMORY_BYTES // 1024**2} MB)") from None
        self.rss = int(message.get("rss", 0))
        kind, text = message.get("kind"), str(message.get("text", ""))
        if kind == "ok":
            return text
        if kind == "refused":
            raise ToolError(text)
        self.kill()  # a worker that ran out of memory or crashed is not reused
        if kind == "memory":
            raise ParseBroke(f"it needed more than {MEMORY_BYTES // 1024**2} MB of memory to read")
        raise ParseBroke(f"it crashed the document reader ({text})")


def _read_line(stream: IO[bytes], seconds: float) -> tuple[bytes | None, bool]:
    """The worker's answer line, or (None, True) when none began within `seconds`."""
    ready, _, _ = select.select([stream], [], [], seconds)
    if not ready:
        return None, True
    return stream.readline(), False  # once it starts, the answer is written in one go


def _checkout(fresh: bool = False) -> Worker:
    with _lock:
        while _idle and not fresh:
            w = _idle.pop()
            if w.alive():
                _busy.add(w)
                return w
            w.close()
    w = Worker()
    with _lock:
        _busy.add(w)
    return w


def _checkin(w: Worker) -> None:
    with _lock:
        _busy.discard(w)
        keep = (w.alive() and not w.stopped and w.uses < REUSE and w.rss < RETIRE_RSS
                and len(_idle) < POOL)
        if keep:
            _idle.append(w)
    if not keep:
        w.close()


def run(path: Path, max_chars: int, seconds: float | None = None) -> str:
    """Parse `path` in a worker, waiting in this thread (the indexer's)."""
    seconds = SECONDS if seconds is None else seconds
    fresh = False
    while True:
        w = _checkout(fresh)
        reused = w.uses > 0
        try:
            return w.parse(path, max_chars, seconds)
        except ParseTimedOut:
            raise
        except ParseBroke:
            if reused and not fresh:  # blame the file only after a fresh worker failed too
                fresh = True
                continue
            raise
        finally:
            _checkin(w)


async def run_async(path: Path, max_chars: int, seconds: float | None = None) -> str:
    """Parse `path` in a worker; cancelling the awaiting task kills the worker."""
    seconds = SECONDS if seconds is None else seconds
    fresh = False
    while True:
        # Here, not in a thread: a cancel can then never land between the worker's start
        # and our holding it (starting one is a fork and an exec, a few milliseconds).
        w = _checkout(fresh)
        reused = w.uses > 0
        job = asyncio.ensure_future(asyncio.to_thread(w.parse, path, max_chars, seconds))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            w.kill(on_purpose=True)  # the thread's read ends at once; the parse is gone
            with contextlib.suppress(BaseException):
                await job
            raise
        except ParseTimedOut:
            raise
        except ParseBroke:
            if reused and not fresh:
                fresh = True
                continue
            raise
        finally:
            _checkin(w)


def kill_all() -> int:
    """Kill every worker, parsing or idle (at shutdown); returns how many were parsing."""
    with _lock:
        busy, idle = list(_busy), list(_idle)
        _idle.clear()
    for w in busy:
        w.kill(on_purpose=True)
    for w in idle:
        w.close()
    return len(busy)


def running() -> list[int]:
    """The pids of the workers now parsing (tests, diagnostics)."""
    with _lock:
        return [w.proc.pid for w in _busy]


# The worker process -----------------------------------------------------------------------


def _limit(memory: int) -> None:
    import ctypes
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # die with Dispatch
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _peak_vm() -> int:
    """This process's peak address space (Linux); 0 where /proc does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _serve(memory: int) -> None:
    import resource

    from tools.documents import formats

    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into an answer
    sys.stdout = sys.stderr
    _limit(memory)
    for line in sys.stdin:
        request = json.loads(line)
        used = resource.getrusage(resource.RUSAGE_SELF).ru_utime
        cpu = int(used + float(request["seconds"])) + 2  # this parse's CPU budget, on top of what went before
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, resource.getrlimit(resource.RLIMIT_CPU)[1]))
        try:
            answer = {"kind": "ok", "text": formats.convert_here(Path(request["path"]), int(request["max_chars"]))}
        except ToolError as exc:
            # Out of address space, lxml reports "XMLSyntaxError: unknown error" and zipfile a
            # "damaged" file: a failure that reached the cap is a memory failure, not damage.
            answer = {"kind": "memory" if _peak_vm() >= 0.9 * memory else "refused", "text": str(exc)}
        except MemoryError:
            answer = {"kind": "memory", "text": ""}
        except RecursionError:
            answer = {"kind": "crash", "text": "RecursionError"}
        answer["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
        except MemoryError:
            os._exit(3)
        if answer["kind"] in ("memory", "crash"):
            return


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_BYTES)
