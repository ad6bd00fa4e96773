"""Slack approval cards in action: the Approve / Reject / Edit buttons, the edit
form, the policy switches, and the small replies a press gets.

Every listener acks first (Slack redelivers after 3 s); the decision itself is the
core's (agent.core), which redraws every copy of the card on every app. A press
on a stale card gets a note only the presser sees, and the card is redrawn.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from agent import approvals, gate
from agent.channel import platform_of
from agent.core import Core
from bot import views
from bot.slack.channel import card_blocks, card_fallback
from bot.slack.format import escape

if TYPE_CHECKING:
    from bot.slack.app import SlackFrontEnd

log = logging.getLogger("dispatch.slack")

PLATFORM = "slack"
EDIT_MAX = 3000  # a modal's text input holds at most 3,000 characters
_VALUE = re.compile(r"\d{1,9}")


def policy_blocks(core: Core) -> list[dict[str, Any]]:
    policies = gate.current_policies(core.store, core.settings.policy_overrides)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": (
        "Tap *Switch* to change a connector: auto → ask → off.\n"
        "auto = runs · ask = draft for your approval · off = never offered")}}]
    for c in sorted({t.connector for t in core.registry.all()})[:45]:
        effective = {gate.decide(t, policies) for t in core.registry.all() if t.connector == c}
        shown = policies.get(c) or ("default: " + "/".join(sorted(effective)))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(c)}*: {escape(shown)}"},
                       "accessory": {"type": "button", "action_id": "dispatch_policy", "value": c[:2000],
                                     "text": {"type": "plain_text", "text": "Switch"}}})
    return blocks


# Buttons and the edit form ------------------------------------------------------------------


def _press(body: dict[str, Any]) -> tuple[str, str, str]:
    """(user, channel, message ts) of a button press."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id") or ""
    return str(body["user"]["id"]), str(channel), str(container.get("message_ts") or "")


async def on_card_button(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    await ack()
    front: SlackFrontEnd = context["front"]
    core = front.core
    user, channel, ts = _press(body)
    value, kind = str(action.get("value") or ""), str(action.get("action_id", "")).removeprefix("dispatch_")
    if not _VALUE.fullmatch(value):
        core.store.log("refusal", f"invalid button value from the owner: {value[:64]!r}", ok=False)
        await tell(front, channel, user, "That button is not valid.")
        return
    n, by = int(value), f"{PLATFORM}:{user}"
    row = approvals.get(core.store, n)
    if row is None:
        core.store.log("refusal", f"button for a draft that does not exist: #{n}", ok=False)
        await tell(front, channel, user, f"There is no draft #{n}.")
        return
    if row.state != "pending" or approvals.is_due(row):
        if approvals.is_due(row):
            await core.expire_now(n)
            row = approvals.get(core.store, n) or row
        await tell(front, channel, user, f"Draft #{n} was already decided: {views.OUTCOME.get(row.state, row.state)}.")
        await redraw(front, channel, ts, n)
        return
    if kind == "approve":
        decision = await core.approve(n, by)  # the card is redrawn with the outcome by the core
        if not decision.won:
            await tell(front, channel, user, decision.message)
    elif kind == "reject":
        decision = await core.reject(n, by)
        if decision.won:
            await prompt(front, n, channel, ts, "reason", f"Draft #{n} rejected — nothing was sent. Reply in this "
                                                         "thread with what to change and I'll revise it, or leave it.")
        else:
            await tell(front, channel, user, decision.message)
    else:
        await open_editor(front, n, channel, ts, str(body.get("trigger_id") or ""))


async def on_edit_submit(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    """The edit form: checked before the ack (so a problem shows in the form), edited after."""
    front: SlackFrontEnd = context["front"]
    core = front.core
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        n, channel = int(meta["n"]), str(meta["channel"])
        text = str(view["state"]["values"]["text"]["text"].get("value") or "")
    except (ValueError, KeyError, TypeError):
        await ack()
        return
    row = approvals.get(core.store, n)
    if not text.strip():
        await ack(response_action="errors", errors={"text": "Write the new text, or Cancel."})
        return
    if row is None or row.state != "pending":
        state = views.OUTCOME.get(row.state, row.state) if row else "it does not exist"
        await ack(response_action="errors", errors={"text": f"Draft #{n} was already decided: {state}."})
        return
    await ack()
    decision = await core.edit(n, f"{PLATFORM}:{body['user']['id']}", text)
    if decision.won:
        await show_revision(front, decision.approval, channel)
    else:
        await front.channel.post(channel, escape(decision.message))


async def show_revision(front: SlackFrontEnd, row: Any, channel: str) -> None:
    """The core shows a revision's card where the draft came from; when that is another
    app, the owner also gets it here, where they made the edit."""
    if row is not None and platform_of(row.origin) != PLATFORM:
        await front.core.router.new_card(row, f"{PLATFORM}:{channel}")


async def on_policy_button(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    await ack()
    front: SlackFrontEnd = context["front"]
    core = front.core
    user, channel, ts = _press(body)
    connector = str(action.get("value") or "")
    if connector not in {t.connector for t in core.registry.all()}:
        await tell(front, channel, user, "That setting no longer exists.")
        return
    current = gate.current_policies(core.store, core.settings.policy_overrides).get(connector)
    gate.set_policy(core.store, connector, {"auto": "ask", "ask": "off", "off": "auto"}.get(current or "", "ask"))
    await front.client.chat_update(channel=channel, ts=ts, text="Policies", blocks=policy_blocks(core))


async def on_other_button(ack: Any, body: dict[str, Any], context: Any) -> None:
    await ack()
    front: SlackFrontEnd = context["front"]
    user, channel, _ = _press(body)
    front.core.store.log("refusal", "unknown button from the owner", ok=False,
                         action=str((body.get("actions") or [{}])[0].get("action_id", ""))[:64])
    await tell(front, channel, user, "That button is not valid.")


async def tell(front: SlackFrontEnd, channel: str, user: str, text: str) -> None:
    """A note only the presser sees (Slack's answer to a button, like Telegram's alert)."""
    try:
        await front.client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as exc:
        log.debug("ephemeral refused: %s", exc.response.get("error"))

async def redraw(front: SlackFrontEnd, channel: str, ts: str, n: int) -> None:
    """A press on a stale card: show its outcome, buttons removed."""
    row = approvals.get(front.core.store, n)
    if row is None or not channel or not ts:
        return
    card = front.core.router.card(row)
    try:
        await front.client.chat_update(channel=channel, ts=ts, text=card_fallback(card), blocks=card_blocks(card))
    except SlackApiError as exc:
        log.debug("stale card redraw refused: %s", exc.response.get("error"))

async def prompt(front: SlackFrontEnd, n: int, channel: str, card_ts: str, purpose: str, text: str) -> None:
    """A question in the card's thread; the owner's reply there is the answer."""
    ts = await front.channel.post(channel, text, thread_ts=card_ts or None)
    approvals.add_card(front.core.store, n, {"platform": PLATFORM, "channel": channel, "ts": ts,
                                            "thread_ts": card_ts, "kind": "prompt", "purpose": purpose})

async def open_editor(front: SlackFrontEnd, n: int, channel: str, card_ts: str, trigger_id: str) -> None:
    """Edit in a form that starts from the current text; when Slack won't open one (the
    trigger expired, or the text is longer than a form holds), ask for a thread reply."""
    row = approvals.get(front.core.store, n)
    tool = front.core.registry.get(row.tool) if row else None
    if row is None or tool is None or not tool.edit_field:
        await front.channel.post(channel, f"Draft #{n} has no text to edit; reject it with a reason instead.",
                                thread_ts=card_ts or None)
        return
    current = str(json.loads(row.args_json).get(tool.edit_field) or "")
    if trigger_id and len(current) <= EDIT_MAX:
        try:
            await front.client.views_open(trigger_id=trigger_id, view=edit_view(n, current, channel, card_ts))
            return
        except SlackApiError as exc:
            log.info("edit form refused (%s); asking for a thread reply", exc.response.get("error"))
    await prompt(front, n, channel, card_ts, "edit", f"Reply in this thread with the new text for draft #{n}. "
                                                   "It replaces the whole text; you'll get a new draft to approve.")

def edit_view(n: int, text: str, channel: str, card_ts: str) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": "dispatch_edit",
        "private_metadata": json.dumps({"n": n, "channel": channel, "ts": card_ts}),
        "title": {"type": "plain_text", "text": f"Edit draft #{n}"[:24]},
        "submit": {"type": "plain_text", "text": "Make new draft"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "input", "block_id": "text", "label": {"type": "plain_text", "text": "Text"},
             "element": {"type": "plain_text_input", "action_id": "text", "multiline": True,
                         "initial_value": text, "max_length": EDIT_MAX}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                "This replaces the whole text. You'll get a new draft to approve; nothing is sent yet."}]},
        ],
    }
