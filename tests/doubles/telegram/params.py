"""Request parameters as the Bot API reads them (form fields are strings; objects are JSON).

See ``/work/shared/reference/bot-api-wire.md`` "Encodings".
"""

from __future__ import annotations

import json
from typing import Any

from tests.doubles.telegram.records import JSON, JSON_PARAMS, SentMessage, bad_request


def parse_value(key: str, value: str) -> Any:
    if key in JSON_PARAMS:
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise bad_request(f"can't parse {key} JSON object") from error
    return value


def get(params: JSON, key: str) -> Any:
    value = params.get(key)
    return None if value == "" else value


def opt_int(params: JSON, key: str) -> int | None:
    value = get(params, key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise bad_request(f"invalid {key} specified") from error


def req_int(params: JSON, key: str) -> int:
    value = opt_int(params, key)
    if value is None:
        raise bad_request(f"{key} is empty")
    return value


def opt_float(params: JSON, key: str) -> float | None:
    value = get(params, key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise bad_request(f"invalid {key} specified") from error


def opt_str(params: JSON, key: str) -> str | None:
    value = get(params, key)
    return None if value is None else str(value)


def flag(params: JSON, key: str) -> bool:
    value = params.get(key)
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def scope_key(scope: JSON | None) -> str:
    if not scope or scope.get("type") == "default":
        return "default"
    kind = str(scope.get("type"))
    if kind in ("chat", "chat_administrators"):
        return f"{kind}:{scope.get('chat_id')}"
    if kind == "chat_member":
        return f"{kind}:{scope.get('chat_id')}:{scope.get('user_id')}"
    return kind


def markup_or_none(markup: Any) -> JSON | None:
    """Normalised inline keyboard as stored on a message (empty keyboards mean none)."""
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return markup
    return None


def without_reply(message: JSON) -> JSON:
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def update_type(update: JSON) -> str:
    return next(k for k in update if k != "update_id")


def message_of(message: JSON | SentMessage) -> tuple[int, int]:
    """(chat id, message id) of a Message dict or a SentMessage."""
    if isinstance(message, SentMessage):
        return message.chat_id, message.message_id
    return int(message["chat"]["id"]), int(message["message_id"])
