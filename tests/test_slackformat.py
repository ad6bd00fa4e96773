"""Markdown -> Slack mrkdwn, and Slack's wire text -> plain text (bot/slackformat.py)."""

from __future__ import annotations

import pytest

from bot.slack.format import plain_text, to_mrkdwn


@pytest.mark.parametrize("md, out", [
    ("**bold** and *it* and ~~gone~~", "*bold* and _it_ and ~gone~"),
    ("# Title\n\ntext", "*Title*\n\ntext"),
    ("see [the sheet](https://x.com/s)", "see <https://x.com/s|the sheet>"),
    ("<https://x.com>", "<https://x.com>"),
    ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
    ("<!channel> <@U123> hi", "&lt;!channel&gt; &lt;@U123&gt; hi"),  # the model can't ping anyone
    ("`x<y`", "`x&lt;y`"),
    ("- one\n- two\n  1. sub", "• one\n• two\n    1. sub"),
    ("> quoted **line**\n> more", "> quoted *line*\n> more"),
    ("```py\nif a < b:\n    pass\n```", "```\nif a &lt; b:\n    pass\n```"),
    ("| a | b |\n|---|---|\n| 1 | 2 |", "```\n| a | b |\n|---|---|\n| 1 | 2 |\n```"),
    ("[click](javascript:alert(1))", "[click](javascript:alert(1))"),
])
def test_markdown_to_mrkdwn(md, out):
    assert to_mrkdwn(md) == [out]


def test_a_code_block_in_a_code_block_cannot_close_it_early():
    [piece] = to_mrkdwn("~~~\nprint('```')\n~~~")
    assert piece.startswith("```\n") and piece.endswith("\n```") and piece.count("```") == 2


def test_long_text_is_split_on_blocks_and_a_long_code_block_is_reopened():
    pieces = to_mrkdwn("\n\n".join(f"Paragraph {i}: " + "word " * 300 for i in range(10)))
    assert len(pieces) > 1 and all(len(p) <= 4000 for p in pieces)
    code = to_mrkdwn("```\n" + "\n".join(f"line {i} <x>" for i in range(800)) + "\n```")
    assert len(code) > 1 and all(len(p) <= 4000 and p.startswith("```\n") and p.endswith("\n```") for p in code)
    assert [len(p) for p in to_mrkdwn("x" * 9000)] == [4000, 4000, 1000]


def test_slack_text_back_to_plain():
    text = ("see <https://example.com|example.com> and <https://x.com/a|the docs>, <@U123> in <#C1|general> "
            "<!here> &lt;3 &amp; <mailto:a@b.co|a@b.co>")
    assert plain_text(text) == ("see https://example.com and the docs (https://x.com/a), <@U123> in #general "
                                "@here <3 & a@b.co")
