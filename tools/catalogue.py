"""The catalogue: the tools that ship with Dispatch, collected into a Registry.

Kept apart from the registry (the framework every tool module imports), so that
no tool module and the registry import each other.
"""

from __future__ import annotations

from tools.registry import Registry


def default_registry() -> Registry:
    """The tools that ship with Dispatch."""
    from tools import computer, drive, files, mail_read, mail_send, memory, produce, schedule, slack

    reg = Registry()
    for module in (files, memory, mail_read, mail_send, produce, schedule, computer, slack, drive):
        reg.add_module(module)
    return reg
