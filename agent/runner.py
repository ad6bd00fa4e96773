"""One task through the tool-use loop.

Each step is persisted before the next begins: the user's request, each model
turn, each batch of tool results. Tool calls of one turn run concurrently. A tool
call the gate sends to `ask` becomes a draft; the model is told so and the task
goes on. Failures end the task with one plain sentence and leave the thread valid
(see context.to_api_messages), so the next request works normally.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

from agent import approvals, context, gate, media
from agent.model import Model, ModelFailure
from store.usage import spent_today, usage_summary
from agent.router import Router
from store.config import Settings
from store.db import Store
from sqlmodel import select

from store.models import Message, Task, Thread, utcnow
from tools.registry import Registry, ToolContext, ToolError

log = logging.getLogger("dispatch.runner")

MAX_RESULT_CHARS = 20_000
MAX_STEPS = 40
SHUTDOWN = "dispatch-shutdown"  # the cancel message when Dispatch stops, as opposed to /cancel


def draft_notice(approval_id: int) -> str:
    return (
        f"Draft #{approval_id} is waiting for the owner's approval; it will be sent only "
        "if approved. Do not send it again."
    )


class BudgetSpent(Exception):
    pass


@dataclass
class TaskRunner:
    settings: Settings
    store: Store
    registry: Registry
    model: Model
    router: Router
    # Loaded history rows by id, reused between steps (messages never change).
    _window_cache: dict[int, context.Turn] = field(default_factory=dict)
    # The running scheduler (agent.scheduler), handed to tools as ctx.schedules.
    schedules: Any = None
    # Deferred (plugin) tools a tool search loaded, per task: offered until the task ends.
    _loaded: dict[int, set[str]] = field(default_factory=dict)
    # Tasks that have run an untrusted tool (agent.gate: their persisting calls need the owner).
    _tainted: set[int] = field(default_factory=set)

    def _untrusted_names(self) -> set[str]:
        return {t.name for t in self.registry.all() if t.untrusted}

    # The loop -------------------------------------------------------------

    async def run(self, task: Task) -> None:
        assert task.id is not None
        origin = task.origin
        try:  # a cancel may land anywhere from here on: while photos are prepared, or the status line sent
            await self._append_request(task)
            await self.router.progress(origin, task.id, "Working on it…")
            final = await self._loop(task)
        except asyncio.CancelledError as exc:
            if SHUTDOWN in exc.args:
                raise  # left `running`; Core.recover reports it on the next start
            self._finish(task, "cancelled", "cancelled by the owner")
            close_turn(self.store, task, f"The owner cancelled task #{task.id} (\u201c{_clip(task.text)}\u201d) "
                       "before it finished. Do not continue or redo it unless they ask again.",
                       f"Task #{task.id} was cancelled; I stopped and will not redo it unless asked.")
            await self.router.progress(origin, task.id, "Cancelled.", done=True)
            await self.router.text(origin, f"Stopped task #{task.id}. Anything already done stays done.")
            raise
        except ModelFailure as exc:
            self._finish(task, "failed", str(exc))
            close_turn(self.store, task, f"Task #{task.id} stopped before it finished: {exc}",
                       f"Task #{task.id} stopped before I finished ({exc}).")
            await self.router.progress(origin, task.id, "Stopped.", done=True)
            await self.router.text(origin, f"Task #{task.id} stopped: {exc} Your conversation is intact; send the request again when you're ready.")
            return
        except BudgetSpent as exc:
            self._finish(task, "failed", str(exc))
            close_turn(self.store, task, f"Task #{task.id} did not run: {exc}", f"Task #{task.id} did not run (budget).")
            await self.router.progress(origin, task.id, "Stopped.", done=True)
            await self.router.text(origin, str(exc))
            return
        except Exception as exc:  # a bug must not take the bot down or lose the thread
            log.exception("task %s failed", task.id)
            self._finish(task, "failed", f"internal error: {type(exc).__name__}")
            close_turn(self.store, task, f"Task #{task.id} stopped because of an internal error.",
                       f"Task #{task.id} stopped before I finished (internal error).")
            await self.router.progress(origin, task.id, "Stopped.", done=True)
            await self.router.text(origin, f"Task #{task.id} failed because of an internal error ({type(exc).__name__}); it is in the log. Your conversation is intact.")
            return
        self._finish(task, "done")
        await self.router.progress(origin, task.id, "Done.", done=True)
        await self.router.text(origin, final)

    async def _loop(self, task: Task) -> str:
        assert task.id is not None
        for step in range(MAX_STEPS):
            self.check_budget()
            policies = gate.current_policies(self.store, self.settings.policy_overrides)
            request, window = self._request(task, policies)
            if window.overflow:  # more history than the budget: fold the oldest into the summary
                await self._summarise(task, window.thread)
                request, window = self._request(task, policies)
            response = await self.model.create(task_id=task.id, **request)
            content = [_block(b) for b in response.content]
            content = [b for b in content if not (b.get("type") == "text" and not b.get("text", "").strip())]
            if content:
                self.store.append_message(task.thread_id, "assistant", content, task_id=task.id)
            uses = [b for b in content if b.get("type") == "tool_use"]
            if response.stop_reason != "tool_use" or not uses:
                text = "\n\n".join(b["text"] for b in content if b.get("type") == "text").strip()
                if response.stop_reason == "max_tokens":
                    text += "\n\n(The answer was cut off at the length limit, DISPATCH_MAX_TOKENS.)"
                return text or "Done."
            await self.router.progress(task.origin, task.id, f"Step {step + 1}: {_describe(uses)}")
            tainted = task.id in self._tainted or gate.untrusted_in(request["messages"], self._untrusted_names())
            results = await asyncio.gather(*(self._run_tool(task, u, policies, tainted) for u in uses))
            self.store.append_message(task.thread_id, "user", list(results), kind="tool_results",
                                      task_id=task.id, task_steps=step + 1)
        return f"I stopped after {MAX_STEPS} steps without finishing. Tell me how to continue, or narrow the task."

    # Tools ----------------------------------------------------------------

    async def _run_tool(self, task: Task, use: dict[str, Any], policies: dict[str, str],
                        tainted: bool = False) -> dict[str, Any]:
        name, args, use_id = use["name"], use.get("input") or {}, use["id"]
        tool = self.registry.get(name)
        is_error = False
        if tool is None:
            text, is_error = f"There is no tool called {name}.", True
        else:
            policy = gate.decide(tool, policies, tainted=tainted)
            if tool.untrusted:  # from now on, this task's persisting calls are cards (agent.gate)
                self._tainted.add(task.id or 0)
            ctx = self.tool_context(task.id, task.thread_id, task.origin)
            # Asked again during a long action (computer control), so turning it off stops it at once.
            ctx.allowed = lambda: gate.decide(tool, gate.current_policies(  # type: ignore[union-attr]
                self.store, self.settings.policy_overrides)) != "off"
            try:
                if policy == "off":
                    raise ToolError(f"{name} is turned off by the owner's policy for {tool.connector}.")
                args = await tool.prepared(ctx, args)
                if policy == "ask":
                    text = await self._draft(task, tool.name, tool.connector, args, use_id)
                else:
                    text = await tool.call(ctx, args)
                    self.store.log("tool", f"{name} ran", tool=name, task_id=task.id, args=_short(args))
            except ToolError as exc:
                text, is_error = str(exc), True
                self.store.log("tool", f"{name} refused or failed", tool=name, task_id=task.id, ok=False, error=text[:500])
            except Exception as exc:
                log.exception("tool %s crashed", name)
                text, is_error = f"{name} failed: {type(exc).__name__}: {exc}", True
                self.store.log("tool", f"{name} crashed", tool=name, task_id=task.id, ok=False, error=text[:500])
        return {"type": "tool_result", "tool_use_id": use_id, "content": self._fit(task, use_id, text), "is_error": is_error}

    def tool_context(self, task_id: int | None, thread_id: int | None, origin: str) -> ToolContext:
        async def deliver(path: Path, caption: str) -> str:
            """A file to the owner's own chat: the reply itself, logged as a file sent."""
            result = await self.router.file(origin, path, caption)
            self.store.log("file_sent", f"{path.name} to {origin}: {result or 'failed'}", task_id=task_id,
                           ok=result is not None, path=str(path))
            if result is None:
                raise ToolError(f"Could not deliver {path.name} to the owner's chat; it is at {path}.")
            return result

        ctx = ToolContext(self.settings, self.store, task_id, thread_id, origin, deliver, schedules=self.schedules)
        ctx.policy_of = self._policy_of
        if task_id is not None:
            ctx.offer = lambda names: self._offer(task_id, names)
        return ctx

    # Deferred tools: loaded by a tool search, offered for the rest of the task ------------

    def _policy_of(self, tool: Any) -> str:
        return gate.decide(tool, gate.current_policies(self.store, self.settings.policy_overrides))

    def _offer(self, task_id: int, names: list[str]) -> list[str]:
        allowed = [n for n in names if (t := self.registry.get(n)) is not None and self._policy_of(t) != "off"]
        self._loaded.setdefault(task_id, set()).update(allowed)
        return allowed

    async def _draft(self, task: Task, tool: str, connector: str, args: dict[str, Any], use_id: str) -> str:
        t = self.registry.get(tool)
        assert t is not None
        row = approvals.create_draft(
            self.store, tool=tool, connector=connector, args=args, preview=t.render_preview(args),
            thread_id=task.thread_id, task_id=task.id, origin=task.origin, tool_use_id=use_id,
            ttl_hours=self.settings.approval_ttl_hours,
        )
        await self.router.new_card(row)
        if t.persists:
            return (f"Draft #{row.id} is waiting for the owner's approval. This task has read content the owner "
                    "did not write (files, mail, Slack…), so a schedule or memory note made now takes effect "
                    "only if the owner approves it. Do not make it again.")
        return draft_notice(row.id or 0)

    def _fit(self, task: Task, use_id: str, text: str | list[Any]) -> str | list[Any]:
        """Keep huge results out of the context; the whole text stays on disk.
        Content blocks (a screenshot) pass as they are."""
        if not isinstance(text, str):
            return list(text)
        if len(text) <= MAX_RESULT_CHARS:
            return text
        folder = self.settings.workspace / "results"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"task{task.id}-{use_id}.txt"
        path.write_text(text, encoding="utf-8")
        return (
            text[:MAX_RESULT_CHARS]
            + f"\n\n[Truncated: {len(text)} characters in all. The full result is in {path}; "
            f"read more with read_text(path, offset={MAX_RESULT_CHARS}).]"
        )

    # Context upkeep -----------------------------------------------------------

    def _request(self, task: Task, policies: dict[str, str]) -> tuple[dict[str, Any], context.Window]:
        return context.build_request(
            self.settings, self.store, self.registry, task.thread_id, policies, self._window_cache,
            loaded=self._loaded.get(task.id or 0, ()),
        )

    async def _summarise(self, task: Task, thread: Thread) -> None:
        budget = self.settings.context_tokens
        cut = context.summary_cut(self.store, task.thread_id, thread.summary_upto, budget // 2)
        if cut is None:
            return
        with self.store.session() as s:
            rows = list(s.exec(select(Message).where(
                Message.thread_id == task.thread_id, Message.id > thread.summary_upto, Message.id <= cut  # type: ignore[operator]
            ).order_by(Message.id)))  # type: ignore[arg-type]
        summary = thread.summary
        for last_id, text in context.transcript_chunks(rows):
            prompt = f"Current summary:\n{summary or '(none yet)'}\n\nNew part of the conversation:\n{text}"
            response = await self.model.create(
                task_id=task.id, purpose="summary", system=context.SUMMARY_SYSTEM,
                messages=[{"role": "user", "content": prompt}],
            )
            summary = "\n".join(b.text for b in response.content if b.type == "text").strip() or summary
            with self.store.session() as s:  # progress is kept piece by piece
                row = s.get(Thread, task.thread_id)
                assert row is not None
                row.summary, row.summary_upto = summary, last_id
                s.add(row)
                s.commit()
        await self.router.text(task.origin, f"(I folded {len(rows)} older messages into a running summary to keep things quick.)")

    def check_budget(self) -> None:
        limit = self.settings.daily_budget_usd
        if limit is None:
            return
        spent = spent_today(self.store, self.settings)
        if spent >= limit:
            raise BudgetSpent(
                f"Today's model budget is spent (${spent:.2f} of ${limit:.2f}, DISPATCH_DAILY_BUDGET_USD). "
                f"New work starts again after midnight ({self.settings.tz.key}), or raise the budget."
            )

    # Bookkeeping ----------------------------------------------------------------

    async def _append_request(self, task: Task) -> None:
        text = task.text if task.kind == "owner" else context.EVENT_PREFIX + task.text
        content, tokens = [{"type": "text", "text": text}], None
        if task.files:
            # Photos and short PDFs become blocks the model sees, every file is listed with its
            # name, type and size (agent.media); decoding images runs off the event loop.
            content, tokens = await asyncio.to_thread(media.request_content, self.settings, text, task.files)
        self.store.append_message(
            task.thread_id, "user", content,
            kind="turn" if task.kind == "owner" else "event", task_id=task.id, tokens=tokens,
        )

    def _finish(self, task: Task, state: str, error: str = "") -> None:
        self._loaded.pop(task.id or 0, None)  # per-task state ends with the task
        self._tainted.discard(task.id or 0)
        with self.store.session() as s:
            row = s.get(Task, task.id)
            if row:
                row.state, row.error, row.finished_at = state, error, utcnow()
                s.add(row)
                s.commit()
        u = usage_summary(self.store, task.id or 0)
        self.store.log("task", f"task #{task.id} {state}", task_id=task.id, ok=state == "done",
                       cost_usd=round(u["cost_usd"], 6), calls=int(u["calls"]), error=error)


def close_turn(store: Store, task: Task, event: str, answer: str) -> None:
    """A task that ends without an answer (cancelled, failed, interrupted) still ends
    its turn: a notice of what happened, and an assistant line. So the model sees the
    request was not done and must not be redone unasked, and the next request is a
    turn of its own — never merged into the unfinished one."""
    store.append_message(task.thread_id, "user", [{"type": "text", "text": context.EVENT_PREFIX + event}],
                         kind="event", task_id=task.id)
    store.append_message(task.thread_id, "assistant", [{"type": "text", "text": answer}], task_id=task.id)


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _block(b: Any) -> dict[str, Any]:
    if b.type == "text":
        return {"type": "text", "text": b.text}
    if b.type == "tool_use":
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
    return b.model_dump(exclude_none=True)


def _describe(uses: list[dict[str, Any]]) -> str:
    names = ", ".join(u["name"] for u in uses)
    return f"Using {names}…"


def _short(args: dict[str, Any]) -> str:
    text = json.dumps(args, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "…"
