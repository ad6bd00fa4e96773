"""The core's API for front ends: every decision a front end needs, one call each.

Front ends (Telegram, Slack, the terminal, the one-shot commands through the
control channel) translate platform events into these calls and the typed results
into platform messages — nothing more. So who may talk, what a press does, what a
card says, what a policy switch sets, exist once, and every app behaves the same.

    identify  owner / stranger / pairing attempt (and what to tell a stranger)
    pair      redeem a pairing code (attempts counted in the store, with a lockout)
    submit, cancel, status, log, usage
    press     a card's button: who won, what to tell the presser, what to ask next
    reply     a reply to a card or its prompt: an edit's text, a rejection's reason
    pending, show, reshow   drafts and their full cards
    policies, set_policy    the settings menu and what a change really means
"""

from __future__ import annotations

import json
import logging
from typing import Any

from agent import approvals, desktop, gate, owners, reports
from agent.approvals import State
from agent.cards import Card, state_words
from agent.results import Ask, Button, Identity, PolicyChange, PolicyItem, Press, Reply, Who
from agent.channel import Inbound, platform_of
from store.models import Task
from tools.registry import Effect


log = logging.getLogger("dispatch.api")
# `Core` (agent.core) is named in annotations only: the core builds this API, so importing it
# here would make the two import each other.

RESHOW = 5  # `pending` re-posts the cards of the newest few, so their buttons are at hand


def _who_refused(what: str) -> str:
    return "This button is not for you." if what == "button press" else \
        "Sorry — this is a private assistant. It only works for its owner."


_SENDS = {"email": "mail", "slack": "Slack messages", "google_drive": "uploads to Google Drive"}  # warning words

class CoreAPI:
    def __init__(self, core: "Core") -> None:
        self.core = core
        self.store = core.store
        self.settings = core.settings

    # Who is this -------------------------------------------------------------------

    def allowlist(self, platform: str) -> frozenset[str]:
        return frozenset({"telegram": self.settings.telegram_owners,
                          "slack": self.settings.slack_owners}.get(platform, ()))

    def owner_ids(self, platform: str) -> list[str]:
        """The owner's accounts on this app: the allowlist first, then paired ones."""
        allow = self.allowlist(platform)
        return sorted(allow) + [o.user_id for o in owners.owners(self.store, platform) if o.user_id not in allow]

    def is_owner(self, platform: str, user_id: str) -> bool:
        return owners.is_owner(self.store, platform, str(user_id), self.allowlist(platform))

    def identify(self, platform: str, user_id: str, *, pairing: bool, what: str = "message",
                 **detail: str) -> Identity:
        """Decided before any other handler runs. `pairing` must come from the very parse
        that routes the update (the same handler's check), never a parse of its own."""
        user_id = str(user_id)
        if self.is_owner(platform, user_id):
            return Identity(Who.OWNER)
        if pairing and what == "message":
            return Identity(Who.PAIRING)
        self.store.log("refusal", f"{platform} user {user_id} refused: {what}", ok=False, platform=platform,
                       user=user_id, **{k: str(v)[:200] for k, v in detail.items()})
        if what == "button press" or owners.first_refusal(self.store, platform, user_id):
            return Identity(Who.STRANGER, _who_refused(what))
        return Identity(Who.STRANGER)

    def pair(self, platform: str, user_id: str, name: str, code: str, *, how: str) -> Reply:
        """`how` is the pair command as typed on this app ("/pair CODE", "pair CODE")."""
        user_id = str(user_id)
        if self.is_owner(platform, user_id):
            return Reply("You're already paired: this Dispatch works for you.")
        if not code.strip():
            return Reply(f"Send {how} with the code that `dispatch pair` prints on the desktop.", ok=False)
        if not owners.take_pairing_try(self.store, platform, user_id):
            self.store.log("refusal", f"{platform} user {user_id}: too many pairing attempts", ok=False, user=user_id)
            return Reply("Too many pairing attempts. Try again in an hour with a new code from `dispatch pair`.",
                         ok=False)
        if owners.redeem(self.store, platform, user_id, name, code):
            return Reply("Paired ✓ — you are the owner of this Dispatch now. Send me a task, or help.")
        self.store.log("refusal", f"{platform} user {user_id}: wrong or expired pairing code", ok=False, user=user_id)
        return Reply(f"That code is wrong or has expired. Run `dispatch pair` on the desktop and send {how} "
                     "with the new code within 10 minutes.", ok=False)

    # Requests ------------------------------------------------------------------------

    async def submit(self, text: str, origin: str, files: list[str] | None = None) -> Task | None:
        return await self.core.submit(Inbound(text, origin, list(files or [])))

    async def cancel(self) -> str:
        return await self.core.cancel()

    def status(self) -> str:
        plugins = self.core.plugins.status_lines()
        return reports.status_text(self.core.status()) + ("\nPlugins:\n  " + "\n  ".join(plugins) if plugins else "")

    def log(self, limit: int = 25) -> str:
        return reports.log_text(self.store.recent_actions(limit))

    def usage(self) -> str:
        return reports.usage_text(self.store, self.settings)

    # Drafts -----------------------------------------------------------------------------

    def card(self, approval_id: int) -> Card | None:
        row = approvals.get(self.store, approval_id)
        return self.core.router.card(row) if row else None

    def pending(self) -> list[Card]:
        return [self.core.router.card(r) for r in approvals.pending(self.store)]

    def pending_text(self) -> str:
        return reports.pending_text(self.pending())

    async def reshow(self, origin: str, newest: int = RESHOW) -> None:
        """Fresh cards for the newest pending drafts, here (recorded, so decisions redraw them)."""
        for row in approvals.pending(self.store)[-newest:]:
            await self.core.router.new_card(row, origin)

    async def press(self, approval_id: int, action: str, by: str, *, platform: str = "",
                    where: dict[str, Any] | None = None) -> Press:
        """A button on a card (or /approve N typed in a terminal: `where` None). A press
        whose message is not one of this draft's cards changes nothing and redraws nothing."""
        row = approvals.get(self.store, approval_id)
        if row is None:
            self.store.log("refusal", f"button for a draft that does not exist: #{approval_id}", ok=False, by=by)
            return Press(False, f"There is no draft #{approval_id}.", alert=True)
        if where is not None and not _is_card_of(row, platform, where):
            self.store.log("refusal", f"press for draft #{approval_id} on a message that is not its card",
                           ok=False, by=by)
            return Press(False, "That button does not belong to this card.", alert=True)
        if approvals.is_due(row):
            await self.core.expire_now(approval_id)
            row = approvals.get(self.store, approval_id) or row
        if action == Button.APPROVE:
            decision = await self.core.approve(approval_id, by, wait=False)
            if decision.won:
                return Press(True, "Approved — sending…", sending=decision.sending)
        elif action == Button.REJECT:
            decision = await self.core.reject(approval_id, by)
            if decision.won:
                return Press(True, "Rejected — nothing was sent.", ask=Ask(
                    "reason", f"Draft #{approval_id} rejected — nothing was sent. Reply to this with what to "
                    "change and I'll revise it, or leave it."))
        elif action == Button.EDIT:
            if row.state == State.PENDING:
                current = self.edit_text(row)
                if current is None:
                    return Press(False, f"Draft #{approval_id} has no text to edit; reject it with a reason "
                                 "instead.", alert=True)
                return Press(True, "", ask=Ask("edit", f"Reply to this with the new text for draft #{approval_id}. "
                                               "It replaces the whole text; you'll get a new draft to approve.",
                                               current))
        else:
            return Press(False, "That button is not valid.", alert=True)
        row = approvals.get(self.store, approval_id) or row
        if where is not None:  # a stale card: every copy (this one too) is brought to the stored state, in order
            self.core.router.redraw(approval_id)
        return Press(False, f"Draft #{approval_id} was already decided: {self._words(row)}.", alert=True)

    def edit_text(self, row: Any) -> str | None:
        tool = self.core.registry.get(row.tool)
        if tool is None or not tool.edit_field:
            return None
        return str(json.loads(row.args_json).get(tool.edit_field) or "")

    async def full_text(self, approval_id: int, origin: str, *, platform: str = "",
                        where: dict[str, Any] | None = None) -> str:
        """The whole of a draft, exactly as it will be sent, as a text file to this chat
        (a card shortened to fit its app offers this). Returns what to say if it failed."""
        row = approvals.get(self.store, approval_id)
        if row is None or (where is not None and not _is_card_of(row, platform, where)):
            return f"There is no draft #{approval_id} here."
        folder = self.settings.workspace / "drafts"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"draft-{approval_id}.txt"
        path.write_text(row.preview + "\n", encoding="utf-8")
        sent = await self.core.router.file(origin, path, f"Draft #{approval_id}, complete")
        return "" if sent else f"The full text could not be sent; it is at {path}."

    async def hear(self, path: Any, *, duration: float | None = None) -> Reply:
        """A voice note: its transcript (`text`, to show as "Heard: …" and to submit), or
        why not in one sentence (`ok` False). Nothing is started when it fails."""
        from agent.transcribe import TranscriptionFailed, transcribe

        try:
            heard = await transcribe(self.settings, path, duration=duration)
        except TranscriptionFailed as exc:
            self.store.log("refusal", f"voice note {path.name} not transcribed", ok=False, error=str(exc)[:300])
            return Reply(str(exc), ok=False)
        self.store.log("voice", f"voice note {path.name} transcribed ({heard.engine})", chars=len(heard.text))
        return Reply(heard.text, ok=bool(heard.text.strip()))

    def received(self, path: Any, source: str) -> None:
        """A file from the phone, saved to the inbox: in the audit log."""
        self.store.log("file_received", f"{path.name} from {source} saved to {path}", path=str(path),
                       size=path.stat().st_size)

    def refused_button(self, data: str) -> None:
        self.store.log("refusal", f"invalid button from the owner: {data[:64]!r}", ok=False)

    def add_prompt(self, approval_id: int, platform: str, purpose: str, ref: dict[str, Any]) -> None:
        """A question posted after a press: a reply to it answers it."""
        approvals.add_card(self.store, approval_id, {"platform": platform, **ref, "kind": "prompt",
                                                     "purpose": purpose})

    async def reject(self, approval_id: int, by: str, reason: str = "") -> Reply:
        decision = await self.core.reject(approval_id, by, reason)
        return Reply(self._decision_text(decision, approval_id), decision.won)

    async def edit(self, approval_id: int, by: str, text: str, here: str = "") -> Reply:
        """The owner's new text: a new revision with its own card where the draft came
        from — and here too, when the owner edited on another app."""
        decision = await self.core.edit(approval_id, by, text)
        if decision.won and decision.approval is not None and here \
                and platform_of(here) != platform_of(decision.approval.origin):
            await self.core.router.new_card(decision.approval, here)
        return Reply(self._decision_text(decision, approval_id), decision.won)

    async def reply(self, platform: str, where: dict[str, Any], by: str, text: str, origin: str) -> Reply | None:
        """A message that replies to a card or to its prompt (`where` names the replied-to
        message). None when it is no draft's: then it is an ordinary request."""
        found = approvals.find_by_message(self.store, platform, where)
        if found is None:
            return None
        row, ref = found
        n = row.id or 0
        purpose = ref.get("purpose") or _prompt_purpose(row, platform, where)
        if purpose == "edit" and row.state == State.PENDING:
            edited = await self.edit(n, by, text, here=origin)
            return Reply("" if edited.ok else edited.text, edited.ok)  # the new card says it
        if row.state == State.REJECTED and not row.reason:
            decision = await self.core.give_reason(n, by, text)
            return Reply(decision.message, decision.won)
        await self.submit(f"About draft #{n} ({row.tool}, {row.state}): {text}", origin)
        return Reply("", True)

    def _words(self, row: Any) -> str:
        tool = self.core.registry.get(row.tool)
        return state_words(row.state, saves=bool(tool and tool.persists))

    def _decision_text(self, decision: approvals.Decision, approval_id: int) -> str:
        if decision.won or decision.approval is None:
            return decision.message
        if decision.approval.state in approvals.DECIDED:
            return f"Draft #{approval_id} was already decided: {self._words(decision.approval)}."
        return decision.message

    # Policies ------------------------------------------------------------------------------

    def _policies(self) -> dict[str, str]:
        return gate.current_policies(self.store, self.settings.policy_overrides)

    def policies(self) -> list[PolicyItem]:
        """The settings menu: each connector with what it is now and what its button sets."""
        policies, items = self._policies(), []
        tools = self.core.registry.all()
        for c in sorted({t.connector for t in tools}):
            mine = [t for t in tools if t.connector == c]
            effective = sorted({gate.decide(t, policies) for t in mine})
            now = policies.get(c) or ("default: " + "/".join(effective))
            if any(t.effect == Effect.CONTROL for t in mine):  # control has no "ask" (see agent.desktop)
                nxt = "off" if "auto" in effective else "auto"
            else:
                nxt = {"auto": "ask", "ask": "off", "off": "auto"}.get(policies.get(c, ""), "ask")
            items.append(PolicyItem(c, f"{c}: {now}", nxt))
        for name in sorted(self.core.plugins.servers):  # plugins not started yet have no tools listed
            key = f"mcp:{name}"
            if key not in {i.key for i in items}:
                now = policies.get(key) or "default: read auto, others ask"
                items.append(PolicyItem(key, f"{key}: {now}", {"auto": "ask", "ask": "off", "off": "auto"}
                                        .get(policies.get(key, ""), "ask")))
        return sorted(items, key=lambda i: i.key)

    def set_policy(self, key: str, value: str) -> PolicyChange:
        tools = self.core.registry.all()
        connectors = {t.connector for t in tools}
        names = {t.name for t in tools}
        value = value.strip().lower()
        if key not in connectors | names and not self.core.plugins.accepts_policy_key(key):
            return PolicyChange(False, f"There is no connector or tool called {key!r}. "
                                       f"Known: {', '.join(sorted(connectors | names))}.")
        if value not in gate.POLICIES:
            return PolicyChange(False, f"A policy is auto, ask or off, not {value!r}.")
        before = {t.name: gate.decide(t, self._policies()) for t in tools}
        gate.set_policy(self.store, key, value)
        after_all = self._policies()
        affected = [t for t in tools if t.connector == key or t.name == key]
        effective = {t.name: gate.decide(t, after_all) for t in affected}
        lines = [f"{key} is now {value}."]
        if key in names and key not in connectors:
            tool = next(t for t in tools if t.name == key)
            if effective[key] != value:
                lines = [f"{key} stays {effective[key]}: a tool's setting can only make it stricter than its "
                         f"connector ({tool.connector} is {after_all.get(tool.connector) or 'at its default'})."]
        lines.append("Now: " + ", ".join(f"{n}={p}" for n, p in sorted(effective.items())))
        loosened = sorted(t.name for t in affected if t.effect == Effect.SEND
                          and before[t.name] != "auto" and effective[t.name] == "auto")
        warning = ""
        if loosened:
            what = _SENDS.get(affected[0].connector, "what " + ", ".join(loosened) + " sends")
            warning = (f"⚠ {key}: auto — {what} will be sent without asking you "
                       f"({', '.join(loosened)}). `dispatch policy {key} ask` puts approval back.")
            lines.append(warning)
        return PolicyChange(True, "\n".join(lines), effective, warning)

    def policy_text(self) -> str:
        policies = self._policies()
        lines = ["Policies (auto = run, ask = draft for your approval, off = not offered):"]
        by_connector: dict[str, list[str]] = {}
        for t in self.core.registry.all():
            by_connector.setdefault(t.connector, []).append(f"{t.name}={gate.decide(t, policies)}")
        for connector, names in sorted(by_connector.items()):
            lines.append(f"  {connector}: {policies.get(connector, 'default')} — " + ", ".join(names))
        return "\n".join(lines)

    def policy_command(self, rest: str) -> str:
        """`/policy` and `dispatch policy`: show, or set KEY VALUE."""
        parts = rest.split()
        if not parts:
            return self.policy_text()
        if len(parts) != 2:
            return "Usage: policy CONNECTOR_OR_TOOL auto|ask|off"
        return self.set_policy(parts[0], parts[1]).text

    # The desktop itself --------------------------------------------------------------------

    async def awake(self, arg: str = "") -> str:
        return await desktop.awake_command(self.core, arg)

    def awake_label(self) -> tuple[str, bool]:
        """The keep-awake switch for settings menus: its label, and what pressing it sets."""
        st = self.core.awake.status()
        shown = "off" if not st.wanted else ("on, active" if st.active else "on, NOT active")
        return f"keep-awake: {shown}", not st.wanted

    async def set_awake(self, on: bool) -> str:
        status = await self.core.awake.set(on)
        return "keep-awake: " + ("off" if not status.wanted else ("on" if status.active else
                                                                  "on, but NOT active — see /awake"))

    async def computer(self, arg: str = "") -> str:
        return await desktop.computer_command(self.core, arg)

    async def screenshot(self, origin: str) -> str:
        """Send the screen to `origin`; returns what to say if that failed ('' when sent)."""
        from tools.registry import ToolError

        try:
            path = await desktop.screenshot(self.core, origin)
        except ToolError as exc:
            return f"No screenshot: {exc}"
        if await self.core.router.file(origin, path, "The desktop's screen now") is None:
            return f"The screenshot could not be sent; it is at {path}."
        return ""


def _is_card_of(row: Any, platform: str, where: dict[str, Any]) -> bool:
    return any(ref.get("platform") == platform and ref.get("kind") != "prompt"
               and all(str(ref.get(k)) == str(v) for k, v in where.items()) for ref in row.cards)


def _prompt_purpose(row: Any, platform: str, where: dict[str, Any]) -> str:
    """Slack asks in the card's thread: a prompt there carries the card's ts as thread_ts."""
    root = where.get("ts")
    for ref in reversed(row.cards):
        if ref.get("platform") == platform and ref.get("kind") == "prompt" and root \
                and str(ref.get("thread_ts")) == str(root):
            return str(ref.get("purpose") or "")
    return ""
