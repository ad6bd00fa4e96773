"""The core: the owner's thread, its task queue, and the decisions on drafts.

The queue is the `task` table itself (state `queued`, in id order), so a request
is never only in memory: a restart, or a one-shot `dispatch reject N reason` from
another process, leaves it where the worker finds it. One worker runs one task at
a time for the thread; everything else waits in order. Drafts never block it: a
decision on a draft is handled by whoever receives the press, and only a
rejection with a reason queues a (revision) task.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import select

from agent import approvals, context, questions
from agent.api import CoreAPI
from agent.approvals import Decision
from agent.awake import KeepAwake
from agent.channel import Channel, Inbound
from agent.model import Model
from store.usage import spent_today
from agent.router import Router
from agent.runner import SHUTDOWN, TaskRunner, close_turn
from agent.scheduler import Scheduler
from store.config import Settings
from store.db import Store
from store.models import Approval, Task, utcnow
from tools.filesystem.indexer import FileIndexer
from tools.registry import Registry
from tools import mcp
from tools.documents import readers
from tools.catalogue import default_registry

log = logging.getLogger("dispatch.core")

IDLE_POLL_S = 1.0  # how often an idle worker looks for tasks queued, and decisions taken, by another process
EXPIRY_EVERY_S = 60.0
SEND_GRACE_S = 30.0  # how long shutdown waits for a send under way
ON_DEMAND = ("email", "slack", "google_drive", "schedule")  # ~3,000 tokens of schemas, loaded when needed


@dataclass
class Status:
    running: Task | None
    queued: list[Task] = field(default_factory=list)
    pending: list[Approval] = field(default_factory=list)


class Core:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        registry: Registry | None = None,
        model: Model | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings.db_url)
        self.registry = registry or default_registry()
        self.model = model or Model(settings, self.store)
        self.router = Router(self.store, self.registry, settings)
        self.runner = TaskRunner(settings, self.store, self.registry, self.model, self.router)
        # Plugins (MCP servers) and the built-in connectors whose tools are found on demand
        # (tools.mcp.find_tools), so the first request of a task stays small.
        self.plugins = mcp.install(self.registry, settings, self.store, defer_connectors=ON_DEMAND)
        questions.install(self)  # a plugin's question to the owner becomes a card (agent.questions)
        self.thread_id = self.store.thread_id()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._current: asyncio.Task[None] | None = None
        self._current_id: int | None = None
        self._last_expiry = 0.0
        self._sends: set[asyncio.Task[Approval]] = set()  # approved drafts being sent now
        self.indexer: FileIndexer | None = None  # file index for find_files (tools.filesystem.index)
        self.scheduler = Scheduler(settings, self.store, self.submit)  # scheduled tasks (agent.scheduler)
        self.runner.schedules = self.scheduler
        self.awake = KeepAwake(settings, self.store)  # held while enabled (agent.awake)
        self.api = CoreAPI(self)  # what front ends call (agent.api)

    def sent_words(self, row: Approval) -> str:
        tool = self.registry.get(row.tool)
        return sent_words(row, saves=bool(tool and tool.persists))

    @property
    def running_id(self) -> int | None:
        """The task being worked on now (its answer may still be on its way out)."""
        return self._current_id

    def attach(self, channel: Channel) -> None:
        self.router.attach(channel)

    # Life cycle -----------------------------------------------------------

    async def start(self) -> None:
        """Report what a restart interrupted, finish what was approved, then work. The
        scheduler starts first: an approved "save this schedule" draft finished by
        recover() needs it running; a run it missed is queued now, once."""
        await self.scheduler.start()
        await self.recover()
        self._worker = asyncio.create_task(self._work(), name="dispatch-worker")
        if self.settings.roots:  # scans in a thread; start-up does not wait for it
            self.indexer = FileIndexer(self.settings)
            self.indexer.start()
        await self.awake.start()

    async def stop(self) -> None:
        """Stop working. A running task is interrupted, not cancelled: it is
        reported on the next start, like a crash, so the owner hears of it. A send
        under way is given a moment to finish (cut off, it would end `unknown`)."""
        if self._sends:
            await asyncio.wait(list(self._sends), timeout=SEND_GRACE_S)
        await self.router.settle()
        await self.scheduler.stop()
        await self.awake.stop()
        if self.indexer:
            await self.indexer.stop()
        if self._worker:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        await self.plugins.close()  # no plugin server is left running
        readers.kill_parses()  # no document worker is left running either

    async def recover(self) -> None:
        with self.store.session() as s:
            interrupted = list(s.exec(select(Task).where(Task.state == "running")))
            for t in interrupted:
                t.state, t.error, t.finished_at = "interrupted", "Dispatch stopped during this task", utcnow()
                s.add(t)
            s.commit()
        for t in interrupted:
            line = (f"Task #{t.id} (\u201c{_clip(t.text)}\u201d) was interrupted when Dispatch stopped, "
                    f"after {t.steps} step(s). Send it again if you still need it.")
            close_turn(self.store, t, line, f"Task #{t.id} was interrupted before I finished; I will not redo it "
                                              "unless asked.")
            self.store.log("notice", f"task #{t.id} interrupted by a restart", task_id=t.id, ok=False)
            await self.router.text(t.origin, line)
        unknown, approved = approvals.recover(self.store)
        for row in unknown:
            self._event(f"Draft #{row.id} ({row.tool}) may or may not have been sent: Dispatch stopped while sending it.")
            self.router.redraw(row.id or 0)
            await self.router.text(row.origin, f"Draft #{row.id} ({row.tool}): {row.outcome}")
        for row in approved:
            self.send_approved(row.id or 0)
        await self._expire()
        self.router.sweep()  # decisions taken while Dispatch was down reach every card now

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - self._last_expiry > EXPIRY_EVERY_S:
                await self._expire()
            # Only after a commit (anyone's): a task queued or a decision taken by another
            # process (`dispatch approve N`) is always a commit, and the check is nearly free.
            task = None
            if self.store.changed():
                self.router.sweep()
                task = self._claim_next()
            if task is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
                except asyncio.TimeoutError:
                    pass
                continue
            self._current_id = task.id
            self._current = asyncio.create_task(self.runner.run(task), name=f"task-{task.id}")
            try:
                await asyncio.shield(self._current)
            except asyncio.CancelledError:
                if not _is_cancelling():
                    continue  # the owner cancelled the task; the worker goes on
                # Dispatch itself is stopping: the task stays `running` in the store,
                # and the next start reports it as interrupted.
                self._current.cancel(SHUTDOWN)
                await asyncio.gather(self._current, return_exceptions=True)
                raise
            finally:
                self._current, self._current_id = None, None

    def _claim_next(self) -> Task | None:
        table = Task.__table__  # type: ignore[attr-defined]
        with self.store.session() as s:
            nxt = s.exec(
                select(Task).where(Task.thread_id == self.thread_id, Task.state == "queued").order_by(Task.id)  # type: ignore[arg-type]
            ).first()
        if nxt is None:
            return None
        with self.store.engine.begin() as conn:
            won = conn.execute(
                sa.update(table).where(table.c.id == nxt.id, table.c.state == "queued")
                .values(state="running", started_at=utcnow())
            ).rowcount == 1
        return nxt if won else None

    # Requests ---------------------------------------------------------------

    async def submit(self, inbound: Inbound, *, kind: str = "owner") -> Task | None:
        """Queue a request. Refused (and said so) when today's budget is spent."""
        limit = self.settings.daily_budget_usd
        if kind in ("owner", "schedule") and limit is not None:
            spent = spent_today(self.store, self.settings)
            if spent >= limit:
                msg = (f"Today's model budget is spent (${spent:.2f} of ${limit:.2f}, "
                       f"DISPATCH_DAILY_BUDGET_USD), so I can't start this now. It resets after "
                       f"midnight ({self.settings.tz.key}); your message is kept in the log.")
                if kind == "schedule":
                    msg = (f"A scheduled task did not run: today's model budget is spent (${spent:.2f} of "
                           f"${limit:.2f}, DISPATCH_DAILY_BUDGET_USD). It runs again at its next time; the "
                           f"budget resets after midnight ({self.settings.tz.key}).\n\n"
                           f"\u201c{_clip(inbound.text.splitlines()[0] if inbound.text else '', 200)}\u201d")
                self.store.log("refusal", "budget spent; request not started", ok=False, text=inbound.text[:2000])
                await self.router.text(inbound.origin, msg)
                return None
        task = Task(thread_id=self.thread_id, origin=inbound.origin, text=inbound.text,
                    files=list(inbound.files), kind=kind)
        with self.store.session() as s:
            s.add(task)
            s.commit()
            s.refresh(task)
        if self._current_id is not None and kind == "owner":
            await self.router.text(inbound.origin, f"Queued as task #{task.id}; I'll start when task #{self._current_id} is done.")
        self._wake.set()
        return task

    async def cancel(self) -> str:
        """Stop the running task now (its finished steps stay in the thread)."""
        current, task_id = self._current, self._current_id
        if current is None or current.done():
            return "Nothing is running."
        current.cancel()
        await asyncio.gather(current, return_exceptions=True)
        return f"Cancelled task #{task_id}."

    def status(self) -> Status:
        with self.store.session() as s:
            running = s.get(Task, self._current_id) if self._current_id else None
            queued = list(s.exec(select(Task).where(Task.state == "queued").order_by(Task.id)))  # type: ignore[arg-type]
        return Status(running, queued, approvals.pending(self.store))

    # Decisions on drafts ------------------------------------------------------

    async def approve(self, approval_id: int, by: str, *, wait: bool = True) -> Decision:
        """Claim the draft for this press; the send starts at once, as a task of its own,
        and every card is redrawn on its own (a slow or rate-limited card edit never
        delays the send). With `wait` the final row comes back; without, the press is
        answered at once and `Decision.sending` finishes with the final row."""
        decision = approvals.approve(self.store, approval_id, by)
        if not decision.won:
            if decision.approval and decision.approval.state == "expired":
                self.router.redraw(approval_id)
            return decision
        sending = self.send_approved(approval_id)
        if not wait:
            return Decision(True, decision.approval, f"Draft #{approval_id} approved — sending…", sending)
        final = await sending
        return Decision(True, final, f"Draft #{approval_id} approved and {self.sent_words(final)}.", sending)

    def send_approved(self, approval_id: int) -> "asyncio.Task[Approval]":
        task = asyncio.get_running_loop().create_task(self._execute(approval_id), name=f"send-{approval_id}")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return task

    async def _execute(self, approval_id: int) -> Approval:
        row = approvals.get(self.store, approval_id)
        assert row is not None
        self.router.redraw(approval_id)  # "approved, sending…"
        ctx = self.runner.tool_context(row.task_id, row.thread_id, row.origin)
        final = await approvals.execute(self.store, self.registry, ctx, approval_id)
        self.router.redraw(approval_id)
        self._event(f"The owner approved draft #{approval_id} ({final.tool}): {self.sent_words(final)}.")
        return final

    async def reject(self, approval_id: int, by: str, reason: str = "") -> Decision:
        decision = approvals.reject(self.store, approval_id, by, reason.strip())
        if not decision.won or decision.approval is None:
            return decision
        row = decision.approval
        self.router.redraw(approval_id)
        questions.declined(self, row)  # a plugin's question: its "no" goes back at once
        if reason.strip():
            await self._queue_revision(row, reason.strip())
            return Decision(True, row, f"Draft #{approval_id} rejected; I'll revise it.")
        self._event(f"The owner rejected draft #{approval_id} ({row.tool}); it was not sent.")
        return decision

    async def give_reason(self, approval_id: int, by: str, reason: str) -> Decision:
        """The owner explains a rejection afterwards (a reply to the rejected card):
        the reason is kept and the agent revises the draft."""
        reason = reason.strip()
        if not reason or not approvals.add_reason(self.store, approval_id, reason):
            row = approvals.get(self.store, approval_id)
            return Decision(False, row, f"Draft #{approval_id} already has a reason or was not rejected.")
        row = approvals.get(self.store, approval_id)
        assert row is not None
        await self._queue_revision(row, reason)
        return Decision(True, row, f"Got it — I'll revise draft #{approval_id}.")

    async def _queue_revision(self, row: Approval, reason: str) -> None:
        """A reason is a request to revise: a turn in which the agent makes a new draft."""
        await self.submit(Inbound(
            f"The owner rejected draft #{row.id} ({row.tool}) with this reason: \u201c{reason}\u201d. "
            "Revise it accordingly and make a new draft.", origin=row.origin), kind="revision")

    async def edit(self, approval_id: int, by: str, new_text: str) -> Decision:
        decision = approvals.revise(self.store, approval_id, by, new_text, self.registry,
                                    self.settings.approval_ttl_hours)
        if not decision.won or decision.approval is None:
            return decision
        self.router.redraw(approval_id)
        await self.router.new_card(decision.approval)
        self._event(f"The owner edited draft #{approval_id}; the edited text is draft #{decision.approval.id}, "
                    "waiting for approval.")
        return decision

    async def _expire(self) -> None:
        self._last_expiry = asyncio.get_running_loop().time()
        for row in approvals.expire_due(self.store):
            await self._expired(row)

    async def expire_now(self, approval_id: int) -> None:
        """A press on a card past its time: expire it now rather than at the next sweep."""
        if approvals.expire(self.store, approval_id):
            row = approvals.get(self.store, approval_id)
            if row:
                await self._expired(row)

    async def _expired(self, row: Approval) -> None:
        self.router.redraw(row.id or 0)
        self._event(f"Draft #{row.id} ({row.tool}) expired without a decision; it was not sent.")

    def _event(self, text: str) -> None:
        """Append a system notice to the thread so the model knows what happened."""
        self.store.append_message(self.thread_id, "user", [{"type": "text", "text": context.EVENT_PREFIX + text}],
                                  kind="event")


def sent_words(row: Approval, saves: bool = False) -> str:
    """How an executed draft ended, for the owner and for the thread (a schedule or a
    note is "saved", not "sent")."""
    done, verb = ("saved", "saved") if saves else ("sent", "sent")
    return {"sent": done, "failed": f"not {verb} ({row.outcome})",
            "unknown": f"maybe {verb} — please check ({row.outcome})"}.get(row.state, row.state)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _is_cancelling() -> bool:
    task = asyncio.current_task()
    return bool(task and task.cancelling())
