"""A try-on being put together: one draft per (user, chat), kept in PTB's user_data.

User data is persisted (SQLite), so a draft survives a restart together with the
conversation state. Only plain JSON values are stored.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from services.model import SLOTS, InputImage
from services.storage.jobs import FlowEnd

CONVERSATION = "tryon"  # the ConversationHandler's (persistent) name
FLOWS_KEY = "flows"


@dataclass
class Draft:
    lang: str
    thread_id: int | None = None
    person: InputImage | None = None
    top: InputImage | None = None
    bottom: InputImage | None = None
    decided: list[str] = field(default_factory=list)  # steps filled or skipped
    dress: bool = False
    from_profile: bool = False  # the person photo is the user's saved /me photo
    pending_garment: InputImage | None = None  # "try this on": kind not chosen yet
    last_message_id: int | None = None  # the result replies to the user's last input
    keep: str | None = None  # the garment step where the person keeps their own
    batch: list[InputImage] = field(default_factory=list)  # garments to try one by one
    batch_slot: str | None = None  # the slot the batch's garments go into
    batch_go: bool = False  # "try each one on" chosen; submits once the person is known
    updated_at: float = field(default_factory=time.time)

    def next_step(self) -> str | None:
        return next((step for step in SLOTS if step not in self.decided), None)

    def put(self, step: str, image: InputImage | None) -> None:
        setattr(self, step, image)
        if step not in self.decided:
            self.decided.append(step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Draft:
        images = {
            key: InputImage(**value) if isinstance(value, dict) else None
            for key in ("person", "top", "bottom", "pending_garment")
            if (value := data.get(key)) is not None or key in data
        }
        batch = [InputImage(**item) for item in data.get("batch", [])]
        return cls(**{**data, **images, "batch": batch})


def flow_end(chat_id: int, user_id: int) -> FlowEnd:
    """Where the persistence keeps this flow (bot/persistence.py: the conversation key is
    the JSON list [chat_id, user_id]; the draft is user_data["flows"][str(chat_id)]), so
    the job store can end it in the transaction that writes the job."""
    return FlowEnd(
        user_id=user_id,
        conversation=CONVERSATION,
        conversation_key=json.dumps([chat_id, user_id]),
        flows_key=FLOWS_KEY,
        flow_key=str(chat_id),
    )


def _flows(user_data: dict[str, Any]) -> dict[str, Any]:
    flows: dict[str, Any] = user_data.setdefault("flows", {})
    return flows


def load_draft(user_data: dict[str, Any] | None, chat_id: int) -> Draft | None:
    if user_data is None:
        return None
    raw = user_data.get("flows", {}).get(str(chat_id))
    return Draft.from_dict(raw) if raw else None


def save_draft(user_data: dict[str, Any], chat_id: int, draft: Draft) -> None:
    draft.updated_at = time.time()
    _flows(user_data)[str(chat_id)] = draft.to_dict()


def drop_draft(user_data: dict[str, Any] | None, chat_id: int) -> None:
    if user_data is not None:
        user_data.get("flows", {}).pop(str(chat_id), None)
        if "flows" in user_data and not user_data["flows"]:
            del user_data["flows"]


def expired_drafts(
    user_data: dict[str, Any], timeout: float, now: float
) -> list[tuple[int, Draft]]:
    found = []
    for chat, raw in list(user_data.get("flows", {}).items()):
        draft = Draft.from_dict(raw)
        if now - draft.updated_at > timeout:
            found.append((int(chat), draft))
    return found
