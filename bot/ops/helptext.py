"""What `dispatch COMMAND --help` says: what the command does, in a sentence or two, and
an example or two to copy. Kept apart from the parser (bot/ops/cli.py) so the parser
stays readable; `apply` fills in every subcommand that has no text of its own."""

from __future__ import annotations

import argparse

HELP: dict[str, tuple[str, str]] = {
    "run": ("Start Dispatch: every configured chat app (Telegram, Slack), the scheduler and the control socket; "
            "at a terminal you also talk to it here. Unconfigured at a terminal, it offers `dispatch init`.",
            "dispatch run        # what plain `dispatch` does\n"
            "dispatch service install   # the same, started at login and restarted after a crash"),
    "chat": ("Talk to your thread in this terminal (the chat apps run alongside). Markdown is rendered, drafts "
             "are panels, a multi-line paste is one message; /help lists the commands. Piped input: each line "
             "is one request, all finished before it exits.",
             "dispatch chat\n"
             "dispatch chat < requests.txt"),
    "pair": ("Print a one-time code (10 minutes) that makes the Telegram or Slack account which sends it "
             "the owner. Dispatch must be running to answer it.",
             "dispatch pair      # then send /pair CODE to your bot (in Slack: pair CODE)"),
    "pending": ("Every draft waiting for your approval, with everything it will send: recipients, subject, "
                "attachments, the first lines of the text, and when it expires.",
                "dispatch pending\n"
                "dispatch show 3    # one draft, its whole text"),
    "show": ("Print draft N's whole card: recipients, subject, attachments, the full text, its state.",
             "dispatch show 3"),
    "approve": ("Approve draft N: it is sent exactly once, by the running Dispatch if there is one, else from "
                "here. A draft already decided says how it ended.",
                "dispatch approve 3"),
    "reject": ("Reject draft N: nothing is sent. With a reason, the agent makes a revised draft for you to "
               "approve.",
               "dispatch reject 3\n"
               "dispatch reject 3 make it shorter and drop the second paragraph"),
    "edit": ("Replace draft N's text with yours; you get a new draft (a new card) to approve. In `dispatch "
             "chat`, `/edit 3` alone opens your $EDITOR on the current text.",
             "dispatch edit 3 \"Hi Bob, the numbers are attached. Sam\""),
    "ask": ("Hand one task to your thread and print the answer and any draft cards. Exit 0 when the task is "
            "done, 1 when it failed. Works with Dispatch running (it does the task) or not (this command runs "
            "it and exits).",
            "dispatch ask \"summarise the Q3 numbers\"\n"
            "echo \"what's due this week?\" | dispatch ask\n"
            "dispatch ask --no-wait \"build the weekly recap\"   # only queue it"),
    "log": ("Recent actions, oldest first: tools run, files sent, drafts made and decided, sends, refusals. "
            "-v adds where each draft goes, who decided, reasons, outcomes and tool arguments.",
            "dispatch log\n"
            "dispatch log -v --limit 100"),
    "usage": ("Tokens and estimated cost: today (against DISPATCH_DAILY_BUDGET_USD) and the last 7 days, with "
              "how much came from the prompt cache.",
              "dispatch usage"),
    "policy": ("Show every tool's policy, or set one for a connector or a tool: auto (run), ask (a draft for "
               "your approval), off (not offered). A tool's setting can only be stricter than its connector's. "
               "It prints each affected tool's effective policy and warns when approval goes.",
               "dispatch policy\n"
               "dispatch policy email ask\n"
               "dispatch policy computer off"),
    "service": ("Run Dispatch in the background: started at login, restarted after a crash (a systemd user unit "
                "on Linux, a launchd agent on macOS). Run it from the folder that has your .env. A setup whose "
                "service could not run (no chat app, no API key) is refused with what to fix.",
                "dispatch service install\n"
                "dispatch service status\n"
                "dispatch service install --print   # show the file; change nothing"),
    "doctor": ("Check everything Dispatch depends on — settings, shared folders, the model, Telegram, Slack, "
               "mail, Drive, voice, display, keep-awake, service, plugins — and say what to fix. Exit 1 if "
               "something needs fixing.",
               "dispatch doctor"),
    "connect": ("Connect Google Drive with an OAuth client of your own (README, “Google Drive”).",
                "dispatch connect google\n"
                "dispatch connect google --write --no-browser"),
    "mcp": ("Plugins: add, list, test and remove MCP servers (Claude Desktop's config format).",
            "dispatch mcp list\n"
            "dispatch mcp add files -- npx -y @modelcontextprotocol/server-filesystem ~/Documents"),
}


def apply(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name, parser in subparsers.choices.items():
        description, examples = HELP.get(name, ("", ""))
        if not parser.description and description:
            parser.description = description
        if not parser.epilog and examples:
            parser.epilog = "example" + ("s" if "\n" in examples else "") + ":\n" + "\n".join(
                f"  {line}" for line in examples.splitlines())
        if parser.formatter_class is argparse.HelpFormatter:
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
