"""Slack approval cards in action: the Approve / Reject / Edit / Full text buttons,
the edit form, the policy switches, and the small replies a press gets.

Every listener acks first (Slack redelivers after 3 s), then makes one call on the
core's API (agent.api) and shows its result; the API redraws every copy of the
card on every app. A press on a stale card gets a note only the presser sees, and
that card (and only a card of that draft) is redrawn.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError

from agent.api import CoreAPI
from agent.results import Ask, Button
from agent.cards import state_words
from bot.slack.format import escape


log = logging.getLogger("dispatch.slack")
# `SlackFrontEnd` (bot.slack.app) is named in annotations only: importing it here would make
# the app and its listeners import each other.

PLATFORM = "slack"
EDIT_MAX = 3000  # a modal's text input holds at most 3,000 characters
_VALUE = re.compile(r"\d{1,9}")
_POLICY_VALUE = re.compile(r"([A-Za-z0-9_.:-]{1,60})=(auto|ask|off)")
_AWAKE_VALUE = re.compile(r"awake=(on|off)")


def policy_blocks(api: CoreAPI) -> list[dict[str, Any]]:
    """The settings menu: each button carries the value it sets, so a replayed press
    sets the same value again instead of switching further."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": (
        "Tap *Switch* to change a connector: auto → ask → off.\n"
        "auto = runs · ask = draft for your approval · off = never offered")}}]
    for item in api.policies()[:45]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape(item.label)},
                       "accessory": {"type": "button", "action_id": "dispatch_policy",
                                     "value": f"{item.key}={item.next}"[:2000],
                                     "text": {"type": "plain_text", "text": f"Switch to {item.next}"}}})
    label, sets = api.awake_label()
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape(label)},
                   "accessory": {"type": "button", "action_id": "dispatch_policy",
                                 "value": f"awake={'on' if sets else 'off'}",
                                 "text": {"type": "plain_text", "text": "Turn " + ("on" if sets else "off")}}})
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
    api = front.core.api
    user, channel, ts = _press(body)
    value, kind = str(action.get("value") or ""), str(action.get("action_id", "")).removeprefix("dispatch_")
    if not _VALUE.fullmatch(value):
        api.refused_button(value)
        await tell(front, channel, user, "That button is not valid.")
        return
    n, where = int(value), {"channel": channel, "ts": ts}
    if kind == "full":
        problem = await api.full_text(n, f"{PLATFORM}:{channel}", platform=PLATFORM, where=where)
        if problem:
            await tell(front, channel, user, problem)
        return
    press = await api.press(n, Button(kind), f"{PLATFORM}:{user}", platform=PLATFORM, where=where)
    if not press.won and press.toast:
        await tell(front, channel, user, press.toast)
    if press.ask is not None:
        if press.ask.purpose == "edit":
            await open_editor(front, n, press.ask, channel, ts, str(body.get("trigger_id") or ""))
        else:
            await prompt(front, n, channel, ts, press.ask.purpose, press.ask.text.replace("Reply to this",
                                                                                          "Reply in this thread"))


async def on_edit_submit(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    """The edit form: checked before the ack (so a problem shows in the form), edited after."""
    front: SlackFrontEnd = context["front"]
    api = front.core.api
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        n, channel = int(meta["n"]), str(meta["channel"])
        text = str(view["state"]["values"]["text"]["text"].get("value") or "")
    except (ValueError, KeyError, TypeError):
        await ack()
        return
    card = api.card(n)
    if not text.strip():
        await ack(response_action="errors", errors={"text": "Write the new text, or Cancel."})
        return
    if card is None or not card.pending:
        said = f"Draft #{n} was already decided: {state_words(card.state, card.saves)}." if card \
            else f"There is no draft #{n}."
        await ack(response_action="errors", errors={"text": said})
        return
    await ack()
    reply = await api.edit(n, f"{PLATFORM}:{body['user']['id']}", text, here=f"{PLATFORM}:{channel}")
    if not reply.ok:
        await front.channel.post(channel, escape(reply.text))


async def on_policy_button(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    await ack()
    front: SlackFrontEnd = context["front"]
    api = front.core.api
    user, channel, ts = _press(body)
    value = str(action.get("value") or "")
    policy, awake = _POLICY_VALUE.fullmatch(value), _AWAKE_VALUE.fullmatch(value)
    if awake:
        await tell(front, channel, user, await api.set_awake(awake.group(1) == "on"))
    elif policy:
        change = api.set_policy(policy.group(1), policy.group(2))
        if not change.ok or change.warning:
            await tell(front, channel, user, change.warning or change.text)
    else:
        api.refused_button(value)
        await tell(front, channel, user, "That setting no longer exists.")
        return
    await front.client.chat_update(channel=channel, ts=ts, text="Policies", blocks=policy_blocks(api))


async def on_other_button(ack: Any, body: dict[str, Any], context: Any) -> None:
    await ack()
    front: SlackFrontEnd = context["front"]
    user, channel, _ = _press(body)
    front.core.api.refused_button(str((body.get("actions") or [{}])[0].get("action_id", "")))
    await tell(front, channel, user, "That button is not valid.")


async def tell(front: SlackFrontEnd, channel: str, user: str, text: str) -> None:
    """A note only the presser sees (Slack's answer to a button, like Telegram's alert)."""
    try:
        await front.client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as exc:
        log.debug("ephemeral refused: %s", exc.response.get("error"))


async def prompt(front: SlackFrontEnd, n: int, channel: str, card_ts: str, purpose: str, text: str) -> None:
    """A question in the card's thread; the owner's reply there is the answer."""
    ts = await front.channel.post(channel, text, thread_ts=card_ts or None)
    front.core.api.add_prompt(n, PLATFORM, purpose, {"channel": channel, "ts": ts, "thread_ts": card_ts})


async def open_editor(front: SlackFrontEnd, n: int, ask: Ask, channel: str, card_ts: str, trigger_id: str) -> None:
    """Edit in a form that starts from the current text; when Slack won't open one (the
    trigger expired, or the text is longer than a form holds), ask for a thread reply."""
    if trigger_id and len(ask.current) <= EDIT_MAX:
        try:
            await front.client.views_open(trigger_id=trigger_id, view=edit_view(n, ask.current, channel, card_ts))
            return
        except SlackApiError as exc:
            log.info("edit form refused (%s); asking for a thread reply", exc.response.get("error"))
    await prompt(front, n, channel, card_ts, "edit", ask.text.replace("Reply to this", "Reply in this thread"))

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
