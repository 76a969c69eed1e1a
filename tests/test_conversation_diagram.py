"""handlers/conversation.mmd stays true: its states and commands are the code's."""

from __future__ import annotations

import re
from pathlib import Path

from telegram.ext import CommandHandler, ConversationHandler

from handlers.conversation import build_conversation

DIAGRAM = Path(__file__).resolve().parent.parent / "handlers" / "conversation.mmd"


def diagram_states() -> set[str]:
    states = set()
    for line in DIAGRAM.read_text("utf-8").splitlines():
        if "-->" in line:
            left, _, right = line.partition("-->")
            for side in (left, right.split(":")[0]):
                name = side.strip()
                if name != "[*]":
                    states.add(name.lower())
    return states


def test_the_diagram_shows_every_state_of_the_conversation() -> None:
    conversation = build_conversation()
    code_states = {str(s) for s in conversation.states if s != ConversationHandler.WAITING}
    assert diagram_states() == code_states


def test_every_command_in_the_diagram_is_handled_by_the_conversation() -> None:
    conversation = build_conversation()
    handlers = [
        *conversation.entry_points,
        *conversation.fallbacks,
        *(h for hs in conversation.states.values() for h in hs),
    ]
    commands = {c for h in handlers if isinstance(h, CommandHandler) for c in h.commands}
    shown = set(re.findall(r"(?<![\w/])/([a-z]+)\b(?!\.)", DIAGRAM.read_text("utf-8")))
    assert shown <= commands, shown - commands
