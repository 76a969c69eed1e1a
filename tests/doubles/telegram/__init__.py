"""A fake Telegram Bot API server for end-to-end tests.

`FakeTelegram` is an aiohttp server on 127.0.0.1 that the real python-telegram-bot stack talks to
over HTTP: point a bot at it with ``base_url=f"{fake.base_url}/bot"`` and
``base_file_url=f"{fake.base_url}/file/bot"``.

It simulates a small Telegram world (users, private chats, groups, forum topics, files) and the
Bot API rules a try-on bot depends on:

* long-polling ``getUpdates`` with offset confirmation and ``allowed_updates``, or a webhook
  the double POSTs updates to (``delivery.py``);
* privacy mode: in groups the bot only sees commands for it, replies to its messages and service
  messages (everything else lands in `undelivered`); albums as separate updates (``updates.py``);
* multipart uploads, ``getFile`` with relative paths, downloads and the 20 MB limit (``files.py``);
* sending, polls, media groups, topics closed or deleted (``messages.py``), edits (``edits.py``);
* Telegram-exact errors; flood control (429 with ``retry_after``), transient 5xx faults, dropped
  or late answers, a revoked token, an unreachable server (``faults.py``, ``../server.py``).

Tests drive users with `send_text`, `send_photo`, `send_album_items`, `press_button`, ... and
assert on `calls`, `sent`, `callback_answers`, `chat_actions` and `commands`, waiting with
`wait_for` and `wait_for_message` (woken on every recorded call, never by sleeping).

Modules, each adding one concern to the class chain that ends in `FakeTelegram`:
records (data + constants) · formatting · params · core · faults · files · updates · messages ·
edits · bot · delivery · server.
"""

from tests.doubles.telegram.formatting import format_text
from tests.doubles.telegram.records import (
    ANONYMOUS_ADMIN_ID,
    BLOCKED,
    CHAT_ACTIONS,
    CONFLICT_POLLING,
    CONFLICT_WEBHOOK,
    DEFAULT_ALLOWED_UPDATES,
    DEFAULT_TOKEN,
    EDIT_METHODS,
    JSON,
    MAX_CAPTION_LENGTH,
    MAX_DOWNLOAD_SIZE,
    MAX_FILE_UPLOAD,
    MAX_PHOTO_UPLOAD,
    MAX_TEXT_LENGTH,
    NOT_MODIFIED,
    PHOTO_SIDE,
    QUERY_TOO_OLD,
    SECRET_TOKEN_HEADER,
    SEND_METHODS,
    THREAD_NOT_FOUND,
    TOPIC_CLOSED,
    AlbumItem,
    ApiError,
    Call,
    ChatActionRecord,
    SentMessage,
    StoredFile,
    UploadedFile,
    WebhookConfig,
    bad_request,
)
from tests.doubles.telegram.server import FakeTelegram

__all__ = [
    "ANONYMOUS_ADMIN_ID",
    "BLOCKED",
    "CHAT_ACTIONS",
    "CONFLICT_POLLING",
    "CONFLICT_WEBHOOK",
    "DEFAULT_ALLOWED_UPDATES",
    "DEFAULT_TOKEN",
    "EDIT_METHODS",
    "JSON",
    "MAX_CAPTION_LENGTH",
    "MAX_DOWNLOAD_SIZE",
    "MAX_FILE_UPLOAD",
    "MAX_PHOTO_UPLOAD",
    "MAX_TEXT_LENGTH",
    "NOT_MODIFIED",
    "PHOTO_SIDE",
    "QUERY_TOO_OLD",
    "SECRET_TOKEN_HEADER",
    "SEND_METHODS",
    "THREAD_NOT_FOUND",
    "TOPIC_CLOSED",
    "AlbumItem",
    "ApiError",
    "Call",
    "ChatActionRecord",
    "FakeTelegram",
    "SentMessage",
    "StoredFile",
    "UploadedFile",
    "WebhookConfig",
    "bad_request",
    "format_text",
]
