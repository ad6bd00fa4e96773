"""Drafts and decisions: exactly once, whoever presses, whatever restarts."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import select

from agent import approvals
from agent.channel import Inbound
from agent.core import Core
from store.db import Store
from store.models import Approval, Message, Task, utcnow
from tests.conftest import build_test_registry, close_core, make_core, task_state, until


async def draft_via_model(core, fake, to: str = "bob@example.com", text: str = "Hi Bob") -> Approval:
    """The model asks to send a note; the gate turns it into a pending draft."""
    fake.reply("Drafting.", tool_uses=[("send_note", {"to": to, "text": text})])
    fake.reply("Draft is waiting for your approval.")
    task = await core.submit(Inbound(f"send {to} a note", "console:local"))
    await until(lambda: task_state(core.store, task.id) == "done")
    rows = approvals.pending(core.store)
    assert rows, "no draft was made"
    return rows[-1]


async def test_send_becomes_a_draft_and_the_task_goes_on(core, fake, sent):
    row = await draft_via_model(core, fake)
    assert sent == []  # nothing sent without approval
    assert row.state == "pending" and row.tool == "send_note"
    args_json, digest = approvals.canonical({"text": "Hi Bob", "to": "bob@example.com"})
    assert (row.args_json, row.args_sha256) == (args_json, digest)
    assert row.preview == "To: bob@example.com\n\nHi Bob"
    assert row.expires_at is not None and row.expires_at > utcnow() + timedelta(hours=23)
    # The model was told it is a draft and not to send again; the card went to the origin.
    result = fake.requests[1]["messages"][-1]["content"][0]
    assert result["content"].startswith(f"Draft #{row.id} is waiting for the owner's approval")
    assert "Do not send it again" in result["content"]
    assert core.channel.cards[-1].approval_id == row.id
    assert core.channel.texts[-1] == "Draft is waiting for your approval."


async def test_approve_sends_exactly_once_and_tells_the_thread(core, fake, sent):
    row = await draft_via_model(core, fake)
    decision = await core.approve(row.id, "console:sam")
    assert decision.won and decision.approval.state == "sent"
    assert sent == [{"to": "bob@example.com", "text": "Hi Bob"}]
    again = await core.approve(row.id, "console:sam")
    assert not again.won and "already decided: sent" in again.message
    assert len(sent) == 1
    await core.router.settle()  # cards are redrawn in the background
    assert core.channel.updates[-1].state == "sent"
    with core.store.session() as s:
        last = s.exec(select(Message).order_by(Message.id.desc())).first()
    assert last.kind == "event" and f"approved draft #{row.id}" in last.content[0]["text"]
    assert core.store.recent_actions(1, kinds=("send",))[0].ok


async def test_two_concurrent_approvals_one_execution(core, fake, sent):
    row = await draft_via_model(core, fake)
    results = await asyncio.gather(*(core.approve(row.id, f"device{i}") for i in range(5)))
    assert sum(d.won for d in results) == 1
    assert len(sent) == 1


async def test_two_processes_racing_on_one_draft_send_once(core, fake, sent, settings):
    """Two stores on one database file (two processes' worth), pressing from threads."""
    row = await draft_via_model(core, fake)
    other = Store(settings.db_url)
    barrier = threading.Barrier(2)
    wins: list[bool] = []

    def press(store: Store) -> None:
        barrier.wait()
        wins.append(approvals.approve(store, row.id, "race").won)

    threads = [threading.Thread(target=press, args=(s,)) for s in (core.store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, True]
    final = await approvals.execute(core.store, core.registry, None, row.id)  # type: ignore[arg-type]
    again = await approvals.execute(other, core.registry, None, row.id)  # type: ignore[arg-type]
    assert final.state == again.state == "sent" and len(sent) == 1
    other.close()


async def test_reject_sends_nothing_and_a_reason_starts_a_revision(core, fake, sent):
    row = await draft_via_model(core, fake)
    fake.reply("Revised.", tool_uses=[("send_note", {"to": "bob@example.com", "text": "Dear Bob, hello."})])
    fake.reply("Here is a more formal draft.")
    decision = await core.reject(row.id, "console:sam", "too casual")
    assert decision.won and "revise" in decision.message
    await until(lambda: len(approvals.pending(core.store)) == 1, what="revised draft")
    revised = approvals.pending(core.store)[0]
    assert revised.id != row.id and json.loads(revised.args_json)["text"] == "Dear Bob, hello."
    assert approvals.get(core.store, row.id).state == "rejected"
    assert approvals.get(core.store, row.id).reason == "too casual"
    assert sent == []
    # The revision turn told the model why, as a system notice.
    assert "too casual" in str(fake.requests[2]["messages"][-1]) and "[Dispatch]" in str(fake.requests[2]["messages"][-1])
    with core.store.session() as s:
        kinds = [t.kind for t in s.exec(select(Task).order_by(Task.id))]
    assert kinds == ["owner", "revision"]


async def test_reject_without_reason_starts_no_turn(core, fake, sent):
    row = await draft_via_model(core, fake)
    calls = len(fake.requests)
    assert (await core.reject(row.id, "console:sam")).won
    await asyncio.sleep(0.1)
    assert len(fake.requests) == calls and sent == []
    assert not (await core.approve(row.id, "console:sam")).won  # a later approve loses
    assert sent == []


async def test_edit_makes_a_new_revision_and_only_it_can_be_sent(core, fake, sent):
    row = await draft_via_model(core, fake)
    decision = await core.edit(row.id, "console:sam", "Hi Bob, see you at 3.")
    new = decision.approval
    assert decision.won and new.revision_of == row.id and new.state == "pending"
    assert json.loads(new.args_json) == {"to": "bob@example.com", "text": "Hi Bob, see you at 3."}
    assert approvals.get(core.store, row.id).state == "superseded"
    assert core.channel.cards[-1].approval_id == new.id and core.channel.cards[-1].revision_of == row.id
    assert not (await core.approve(row.id, "console:sam")).won
    assert (await core.approve(new.id, "console:sam")).won
    assert sent == [{"to": "bob@example.com", "text": "Hi Bob, see you at 3."}]


async def test_a_failed_send_is_reported_and_not_retried(core, fake, sent):
    row = await draft_via_model(core, fake, to="fail@example.com")
    decision = await core.approve(row.id, "console:sam")
    assert decision.approval.state == "failed"
    assert "refused the recipient" in decision.message
    await core.router.settle()
    assert core.channel.updates[-1].state == "failed"
    assert not (await core.approve(row.id, "console:sam")).won


async def test_tampered_arguments_are_never_sent(core, fake, sent):
    row = await draft_via_model(core, fake)
    with core.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE approval SET args_json = :a WHERE id = :i"),
                     {"a": json.dumps({"to": "evil@example.com", "text": "x"}), "i": row.id})
    decision = await core.approve(row.id, "console:sam")
    assert decision.approval.state == "failed" and "checksum" in decision.approval.outcome
    assert sent == []


async def test_expired_drafts_cannot_be_approved(core, fake, sent):
    row = await draft_via_model(core, fake)
    with core.store.engine.begin() as conn:
        conn.execute(sa.update(Approval.__table__).where(Approval.__table__.c.id == row.id)
                     .values(expires_at=utcnow() - timedelta(minutes=1)))
    decision = await core.approve(row.id, "console:sam")
    assert not decision.won and "expired" in decision.message
    assert sent == [] and approvals.get(core.store, row.id).state == "expired"


async def test_expiry_sweep_updates_cards_and_tells_the_thread(core, fake, sent):
    row = await draft_via_model(core, fake)
    with core.store.engine.begin() as conn:
        conn.execute(sa.update(Approval.__table__).where(Approval.__table__.c.id == row.id)
                     .values(expires_at=utcnow() - timedelta(minutes=1)))
    await core._expire()
    assert approvals.get(core.store, row.id).state == "expired"
    await core.router.settle()  # cards are redrawn in the background
    assert core.channel.updates[-1].state == "expired"
    with core.store.session() as s:
        last = s.exec(select(Message).order_by(Message.id.desc())).first()
    assert "expired" in last.content[0]["text"]


async def test_pending_draft_survives_a_restart_and_is_still_approvable(tmp_path, fake, settings, sent):
    core, _ = await make_core(settings)
    row = await draft_via_model(core, fake)
    await close_core(core)

    core2, ch2 = await make_core(settings)
    try:
        assert [a.id for a in approvals.pending(core2.store)] == [row.id]
        decision = await core2.approve(row.id, "console:sam")
        assert decision.won and sent == [{"to": "bob@example.com", "text": "Hi Bob"}]
        # The card from before the restart is redrawn from the store.
        await core2.router.settle()
        assert ch2.updates[-1].approval_id == row.id and ch2.updates[-1].state == "sent"
    finally:
        await close_core(core2)


async def test_a_crash_while_sending_becomes_unknown_and_is_never_resent(tmp_path, fake, settings, sent):
    core, _ = await make_core(settings)
    row = await draft_via_model(core, fake)
    assert approvals.approve(core.store, row.id, "console:sam").won
    assert approvals.transition(core.store, row.id, "approved", "sending")  # ...and the power goes out
    await close_core(core)

    core2, ch2 = await make_core(settings)
    try:
        after = approvals.get(core2.store, row.id)
        assert after.state == "unknown" and "may or may not have gone out" in after.outcome
        assert any(f"Draft #{row.id}" in t and "not be re-sent" in t for t in ch2.texts)
        assert sent == []
        assert not (await core2.approve(row.id, "console:sam")).won
        assert sent == []
    finally:
        await close_core(core2)


async def test_approved_but_not_yet_sending_is_finished_on_start(tmp_path, fake, settings, sent):
    core, _ = await make_core(settings)
    row = await draft_via_model(core, fake)
    assert approvals.approve(core.store, row.id, "console:sam").won  # crash right after the press
    await close_core(core)
    core2, _ = await make_core(settings)
    try:
        assert approvals.get(core2.store, row.id).state == "sent" and len(sent) == 1
    finally:
        await close_core(core2)


async def test_pending_drafts_never_block_the_thread(core, fake, sent):
    await draft_via_model(core, fake)
    fake.reply("Unrelated answer.")
    task = await core.submit(Inbound("what's 2+2?", "console:local"))
    await until(lambda: task_state(core.store, task.id) == "done")
    assert core.channel.texts[-1] == "Unrelated answer."


async def test_one_shot_cli_core_decides_on_the_same_state_machine(core, fake, settings, sent):
    """`dispatch approve N` from another process: a Core that is not started."""
    row = await draft_via_model(core, fake)
    other = Core(settings, registry=build_test_registry())
    try:
        assert (await other.approve(row.id, "cli:sam")).won
        assert not (await core.approve(row.id, "console:sam")).won
        assert len(sent) == 1
    finally:
        await other.model.aclose()
        other.store.close()
