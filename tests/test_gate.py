"""Every effect x policy pair through the gate, via the real runner and model client."""

from __future__ import annotations

import pytest

from agent import approvals, gate
from agent.channel import Inbound
from tests.conftest import task_state, until
from tools.registry import Effect, Registry

CALLS: list[str] = []


def make_tool(effect: str):
    def probe(word: str) -> str:
        """Record a word (test tool).

        Args:
            word: Anything.
        """
        CALLS.append(f"{effect}:{word}")
        return f"recorded {word}"

    probe.__name__ = f"probe_{effect}"
    return probe


EXPECTED_DEFAULT = {"read": "auto", "write": "auto", "send": "ask", "control": "off", "mystery": "ask"}


@pytest.mark.parametrize("effect", ["read", "write", "send", "control"])
@pytest.mark.parametrize("policy", ["auto", "ask", "off"])
async def test_effect_x_policy(core, fake, effect: str, policy: str):
    CALLS.clear()
    core.registry.add(make_tool(effect), connector="probe", effect=effect)
    gate.set_policy(core.store, "probe", policy)
    name = f"probe_{effect}"
    fake.reply(tool_uses=[(name, {"word": "hi"})])
    fake.reply("finished")
    task = await core.submit(Inbound("probe it", "console:local"))
    await until(lambda: task_state(core.store, task.id) == "done")

    offered = [t["name"] for t in fake.requests[0].get("tools", [])]
    result = fake.requests[1]["messages"][-1]["content"][0]
    if policy == "off" or (policy == "ask" and effect == "control"):
        # (control under "ask" is off: an approved click would land on a changed screen)
        assert name not in offered  # not even offered...
        assert result["is_error"] and "turned off" in result["content"]  # ...and refused if called anyway
        assert CALLS == [] and approvals.pending(core.store) == []
    elif policy == "ask":
        assert name in offered
        assert CALLS == [] and "waiting for the owner's approval" in result["content"]
        draft = approvals.pending(core.store)[0]
        assert draft.tool == name and draft.connector == "probe"
        assert (await core.approve(draft.id, "console:sam")).approval.state == "sent"
        assert CALLS == [f"{effect}:hi"]
    else:
        assert name in offered and CALLS == [f"{effect}:hi"] and result["content"] == "recorded hi"
        assert approvals.pending(core.store) == []


@pytest.mark.parametrize("effect", list(EXPECTED_DEFAULT))
def test_defaults_by_effect_and_unknown_is_ask(effect: str):
    reg = Registry()
    t = reg.add(make_tool(effect), connector="probe", effect=effect)
    assert gate.decide(t, {}) == EXPECTED_DEFAULT[effect]


def test_a_tool_setting_narrows_but_never_loosens():
    reg = Registry()
    send = reg.add(make_tool("send"), connector="mail", effect=Effect.SEND)
    read = reg.add(make_tool("read"), connector="mail", effect=Effect.READ)
    assert gate.decide(send, {"probe_send": "auto"}) == "ask"  # can't loosen the default
    assert gate.decide(send, {"mail": "ask", "probe_send": "auto"}) == "ask"
    assert gate.decide(read, {"mail": "auto", "probe_read": "off"}) == "off"  # can narrow
    assert gate.decide(send, {"mail": "off", "probe_send": "ask"}) == "off"
    assert gate.decide(send, {"mail": "auto"}) == "auto"  # the owner's explicit choice
    assert gate.decide(send, {"mail": "bogus"}) == "ask"  # garbage never means auto


def test_chat_settings_override_the_environment(core):
    assert gate.current_policies(core.store, {"files": "off"}) == {"files": "off"}
    gate.set_policy(core.store, "files", "ask")
    assert gate.current_policies(core.store, {"files": "off"}) == {"files": "ask"}
    assert core.store.recent_actions(1)[0].kind == "policy"
    with pytest.raises(ValueError):
        gate.set_policy(core.store, "files", "maybe")
