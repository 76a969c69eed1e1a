"""A fake Telegram Bot API server for end-to-end tests.

`FakeTelegram` is an aiohttp server on 127.0.0.1 that the real python-telegram-bot stack talks to
over HTTP: point a bot at it with ``base_url=f"{fake.base_url}/bot"`` and
``base_file_url=f"{fake.base_url}/file/bot"``.

It simulates a small Telegram world (users, private chats, groups, forum topics, files) and the
Bot API rules a try-on bot depends on:

* long-polling ``getUpdates`` with offset confirmation and ``allowed_updates``;
* privacy mode: in groups the bot only sees commands for it, replies to its messages and service
  messages (everything else lands in `undelivered`);
* multipart uploads, ``getFile`` with relative paths, downloads and the 20 MB download limit;
* Telegram-exact errors (not modified, message to edit not found, chat migrated, parse errors);
* flood control (429 with ``retry_after``), transient 5xx faults and dropped connections.

Tests drive users with `send_text`, `send_photo`, `press_button`, ... and assert on `calls`,
`sent`, `callback_answers`, `chat_actions` and `commands`, waiting with `wait_for` and
`wait_for_message` (woken on every recorded call, never by sleeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import unquote

from aiohttp import web
from PIL import Image, UnidentifiedImageError

JSON = dict[str, Any]
T = TypeVar("T")

DEFAULT_TOKEN = "123456789:FAKE-test-token-for-the-double-00000000"
ANONYMOUS_ADMIN_ID = 1087968824  # telegram.constants.ChatID.ANONYMOUS_ADMIN
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024  # getFile limit of the cloud Bot API
MAX_PHOTO_UPLOAD = 10 * 1024 * 1024
MAX_FILE_UPLOAD = 50 * 1024 * 1024
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
PHOTO_SIDE = 1280  # Telegram recompresses photos to at most 1280 px

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CONFLICT_POLLING = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)

SEND_METHODS = frozenset(
    {
        "sendmessage",
        "sendphoto",
        "senddocument",
        "sendmediagroup",
        "sendsticker",
        "sendvideo",
        "sendanimation",
        "sendaudio",
        "sendvoice",
        "sendlocation",
        "copymessage",
        "forwardmessage",
    }
)
EDIT_METHODS = frozenset(
    {"editmessagetext", "editmessagecaption", "editmessagereplymarkup", "editmessagemedia"}
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types delivered when allowed_updates is empty or was never set.
DEFAULT_ALLOWED_UPDATES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "callback_query",
        "inline_query",
        "chosen_inline_result",
        "my_chat_member",
        "chat_join_request",
        "poll",
        "poll_answer",
    }
)
SERVICE_KEYS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "forum_topic_created",
        "forum_topic_closed",
        "forum_topic_reopened",
    }
)
JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "entities",
        "caption_entities",
        "media",
        "allowed_updates",
        "commands",
        "scope",
        "link_preview_options",
        "message_ids",
        "permissions",
    }
)
_COMMAND_RE = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}")
_BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(text: str) -> ApiError:
    return ApiError(400, f"Bad Request: {text}")


@dataclass
class UploadedFile:
    """A multipart file part as the bot uploaded it."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Call:
    """One Bot API request. `time` is `FakeTelegram.clock()` at arrival."""

    method: str
    params: JSON
    time: float
    status: int | None = None  # None while the request is still being served
    description: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "photo", "document", "sticker", "video", "voice", ...
    data: bytes
    file_size: int  # may be larger than len(data) to simulate huge files cheaply
    file_path: str  # relative, as getFile returns it
    mime_type: str | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    photo_sizes: list[JSON] | None = None  # every size of the photo this file belongs to


@dataclass
class SentMessage:
    """A message the bot sent, kept up to date with later edits and deletion."""

    message_id: int
    chat_id: int
    kind: str  # "text", "photo", "document", "sticker", ...
    date: int
    message: JSON  # the Message object as last returned to the bot
    params: JSON  # the request parameters of the send
    thread_id: int | None = None
    text: str | None = None  # current text after parse_mode processing
    caption: str | None = None
    raw_text: str | None = None  # text or caption exactly as sent (with markup)
    parse_mode: str | None = None
    photo: bytes | None = None  # the uploaded bytes
    document: bytes | None = None
    file_name: str | None = None
    mime_type: str | None = None
    file_id: str | None = None  # largest photo size / document file id
    reply_to_message_id: int | None = None
    reply_markup: JSON | None = None  # current markup as sent (inline keyboard, ForceReply, ...)
    force_reply: bool = False
    selective: bool = False
    media_group_id: str | None = None
    edits: list[str] = field(default_factory=list)  # text/caption after each edit, in order
    deleted: bool = False

    @property
    def body(self) -> str:
        """Text or caption, whichever the message has."""
        return self.text if self.text is not None else (self.caption or "")

    @property
    def buttons(self) -> list[tuple[str, str | None]]:
        """(label, callback_data) of every inline button, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [(b.get("text", ""), b.get("callback_data")) for row in rows for b in row]

    def button_data(self, label_part: str) -> str:
        """callback_data of the first button whose label contains `label_part`."""
        for label, data in self.buttons:
            if label_part in label and data is not None:
                return data
        raise AssertionError(f"no button containing {label_part!r} in {self.buttons}")


@dataclass
class ChatActionRecord:
    chat_id: int
    action: str
    thread_id: int | None
    time: float


@dataclass
class _FloodRule:
    method: str | None
    chat_id: int | None
    retry_after: int
    remaining: int


@dataclass
class _FaultRule:
    method: str
    remaining: int
    status: int = 500
    description: str = ""
    drop: bool = False
    after_processing: bool = False


@dataclass
class _Chat:
    info: JSON
    bot_is_admin: bool = False
    next_message_id: int = 1
    messages: dict[int, JSON] = field(default_factory=dict)
    topics: dict[int, JSON] = field(default_factory=dict)  # thread id -> forum_topic_created msg
    members: dict[int, str] = field(default_factory=dict)  # user id -> status
    migrated_to: int | None = None
    bot_blocked: bool = False  # private chat: the user blocked the bot
    bot_removed: bool = False  # group: the bot was kicked

    @property
    def id(self) -> int:
        return int(self.info["id"])

    @property
    def type(self) -> str:
        return str(self.info["type"])

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    @property
    def is_forum(self) -> bool:
        return bool(self.info.get("is_forum"))

    def take_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


# ---------------------------------------------------------------------------------------------
# Text formatting (parse_mode) as Telegram applies it.


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _parse_error(text: str) -> ApiError:
    return bad_request(f"can't parse entities: {text}")


_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


class _TelegramHTML(HTMLParser):
    """Telegram's HTML parse mode: the supported tags only, properly nested."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.parts: list[str] = []
        self.length = 0  # UTF-16 length of the plain text so far
        self.stack: list[tuple[str, int, JSON]] = []
        self.entities: list[JSON] = []

    def _byte_offset(self) -> int:
        line, column = self.getpos()
        lines = self.source.split("\n")
        index = sum(len(text) + 1 for text in lines[: line - 1]) + column
        return len(self.source[:index].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        spoiler_span = tag == "span" and attributes.get("class") == "tg-spoiler"
        if tag not in _HTML_ENTITY_TYPES or (tag == "span" and not spoiler_span):
            raise _parse_error(
                f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}'
            )
        entity: JSON = {"type": _HTML_ENTITY_TYPES[tag]}
        if tag == "a":
            entity["url"] = attributes.get("href") or ""
        elif tag == "tg-emoji":
            entity["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif tag == "blockquote" and "expandable" in attributes:
            entity["type"] = "expandable_blockquote"
        elif tag == "code" and self.stack and self.stack[-1][0] == "pre":
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self.stack[-1][2]["language"] = language
        self.stack.append((tag, self.length, entity))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            raise _parse_error(f"Unexpected end tag at byte offset {self._byte_offset()}")
        open_tag, start, entity = self.stack.pop()
        if open_tag != tag:
            raise _parse_error(
                f"Unmatched end tag at byte offset {self._byte_offset()}, "
                f'expected "</{open_tag}>", found "</{tag}>"'
            )
        inside_pre = tag == "code" and self.stack and self.stack[-1][0] == "pre"
        if self.length > start and not inside_pre:
            self.entities.append({**entity, "offset": start, "length": self.length - start})

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        self.length += _utf16_len(data)

    def result(self) -> tuple[str, list[JSON]]:
        self.feed(self.source)
        self.close()
        if self.stack:
            raise _parse_error(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"'
            )
        return "".join(self.parts), sorted(self.entities, key=lambda e: int(e["offset"]))


_MD2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD2_MARKERS = {
    "```": "pre",
    "`": "code",
    "||": "spoiler",
    "__": "underline",
    "*": "bold",
    "_": "italic",
    "~": "strikethrough",
}


def _parse_markdown_v2(source: str) -> tuple[str, list[JSON]]:
    """MarkdownV2 as Telegram parses it (reserved characters must be escaped)."""
    out: list[str] = []
    length = 0
    entities: list[JSON] = []
    stack: list[tuple[str, int, int]] = []  # (marker, utf16 start, byte offset)
    i = 0

    def emit(text: str) -> None:
        nonlocal length
        out.append(text)
        length += _utf16_len(text)

    while i < len(source):
        char = source[i]
        code = bool(stack) and stack[-1][0] in ("`", "```")
        if char == "\\" and i + 1 < len(source):
            emit(source[i + 1])
            i += 2
            continue
        if code:
            code_marker = stack[-1][0]
            if source.startswith(code_marker, i):
                _, start, _ = stack.pop()
                if length > start:
                    entities.append(
                        {
                            "type": _MD2_MARKERS[code_marker],
                            "offset": start,
                            "length": length - start,
                        }
                    )
                i += len(code_marker)
            else:
                emit(char)
                i += 1
            continue
        marker = next((m for m in _MD2_MARKERS if source.startswith(m, i)), None)
        if marker is not None:
            if stack and stack[-1][0] == marker:
                _, start, _ = stack.pop()
                if length > start:
                    entities.append(
                        {"type": _MD2_MARKERS[marker], "offset": start, "length": length - start}
                    )
            else:
                stack.append((marker, length, len(source[:i].encode())))
                if marker == "```":  # the rest of the opening line names the language
                    end = source.find("\n", i + 3)
                    i = len(source) if end < 0 else end + 1
                    continue
            i += len(marker)
            continue
        if char == "[":
            stack.append(("[", length, len(source[:i].encode())))
            i += 1
            continue
        if char == "]" and stack and stack[-1][0] == "[" and source.startswith("(", i + 1):
            end = i + 2
            url: list[str] = []
            while end < len(source) and source[end] != ")":
                if source[end] == "\\" and end + 1 < len(source):
                    end += 1
                url.append(source[end])
                end += 1
            if end >= len(source):
                raise _parse_error(
                    f"Can't find end of a url at byte offset {len(source[:i].encode())}"
                )
            _, start, _ = stack.pop()
            entities.append(
                {
                    "type": "text_link",
                    "offset": start,
                    "length": length - start,
                    "url": "".join(url),
                }
            )
            i = end + 1
            continue
        if char == ">" and (i == 0 or source[i - 1] == "\n"):
            i += 1  # block quotation marker
            continue
        if char in _MD2_RESERVED:
            raise _parse_error(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        emit(char)
        i += 1
    if stack:
        raise _parse_error(f"Can't find end of the entity starting at byte offset {stack[-1][2]}")
    return "".join(out), sorted(entities, key=lambda e: int(e["offset"]))


def _strip_text(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Telegram trims surrounding whitespace from texts and captions."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = _utf16_len(text[: len(text) - len(text.lstrip())])
    limit = _utf16_len(stripped)
    result: list[JSON] = []
    for entity in entities:
        start = max(0, int(entity["offset"]) - shift)
        end = min(limit, int(entity["offset"]) + int(entity["length"]) - shift)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


def format_text(
    source: str, parse_mode: str | None, entities: list[JSON] | None = None
) -> tuple[str, list[JSON]]:
    """Plain text and entities of a text sent with `parse_mode` (or explicit `entities`)."""
    if entities is not None:
        text, found = source, list(entities)
    elif parse_mode is not None and parse_mode.lower() == "html":
        text, found = _TelegramHTML(source).result()
    elif parse_mode is not None and parse_mode.lower() == "markdownv2":
        text, found = _parse_markdown_v2(source)
    else:  # no parse mode, or legacy Markdown (kept verbatim)
        text, found = source, []
    text, found = _strip_text(text, found)
    return text, found + _auto_entities(text, found)


def _auto_entities(text: str, existing: list[JSON]) -> list[JSON]:
    """bot_command and mention entities, which Telegram detects in every message."""
    taken = {(int(e["offset"]), int(e["length"])) for e in existing}
    found: list[JSON] = []
    for kind, pattern in (("bot_command", _COMMAND_RE), ("mention", _MENTION_RE)):
        for match in pattern.finditer(text):
            offset = _utf16_len(text[: match.start()])
            length = _utf16_len(match.group())
            if (offset, length) not in taken:
                found.append({"type": kind, "offset": offset, "length": length})
    return sorted(found, key=lambda e: int(e["offset"]))


def _entity_text(text: str, entity: JSON) -> str:
    encoded = text.encode("utf-16-le")
    start = int(entity["offset"]) * 2
    return encoded[start : start + int(entity["length"]) * 2].decode("utf-16-le")


# ---------------------------------------------------------------------------------------------
# Images


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _jpeg_scaled(data: bytes, side: int) -> tuple[bytes, int, int]:
    """A JPEG of the image whose longer side is at most `side`."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (side, side))
        scaled = image.convert("RGB")
        scaled.thumbnail((side, side))
        buffer = io.BytesIO()
        scaled.save(buffer, "JPEG", quality=80)
        return buffer.getvalue(), scaled.width, scaled.height


def _jpeg(width: int, height: int, color: tuple[int, int, int] = (200, 120, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG")
    return buffer.getvalue()


def _webp(side: int = 512) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (30, 160, 90, 255)).save(buffer, "WEBP")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Parameters


def _parse_value(key: str, value: str) -> Any:
    if key in JSON_PARAMS:
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise bad_request(f"can't parse {key} JSON object") from error
    return value


def _get(params: JSON, key: str) -> Any:
    value = params.get(key)
    return None if value == "" else value


def _opt_int(params: JSON, key: str) -> int | None:
    value = _get(params, key)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise bad_request(f"invalid {key} specified") from error


def _req_int(params: JSON, key: str) -> int:
    value = _opt_int(params, key)
    if value is None:
        raise bad_request(f"{key} is empty")
    return value


def _opt_float(params: JSON, key: str) -> float | None:
    value = _get(params, key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise bad_request(f"invalid {key} specified") from error


def _opt_str(params: JSON, key: str) -> str | None:
    value = _get(params, key)
    return None if value is None else str(value)


def _bool(params: JSON, key: str) -> bool:
    value = params.get(key)
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def _scope_key(scope: JSON | None) -> str:
    if not scope or scope.get("type") == "default":
        return "default"
    kind = str(scope.get("type"))
    if kind in ("chat", "chat_administrators"):
        return f"{kind}:{scope.get('chat_id')}"
    if kind == "chat_member":
        return f"{kind}:{scope.get('chat_id')}:{scope.get('user_id')}"
    return kind


def _markup_or_none(markup: Any) -> JSON | None:
    """Normalised inline keyboard as stored on a message (empty keyboards mean none)."""
    if isinstance(markup, dict) and markup.get("inline_keyboard"):
        return markup
    return None


def _without_reply(message: JSON) -> JSON:
    return {k: v for k, v in message.items() if k != "reply_to_message"}


def _update_type(update: JSON) -> str:
    return next(k for k in update if k != "update_id")


def _message_of(message: JSON | SentMessage) -> tuple[int, int]:
    """(chat id, message id) of a Message dict or a SentMessage."""
    if isinstance(message, SentMessage):
        return message.chat_id, message.message_id
    return int(message["chat"]["id"]), int(message["message_id"])


# ---------------------------------------------------------------------------------------------


class FakeTelegram:
    """The fake Bot API server plus the simulated Telegram world around the bot."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_id: int = 123456789,
        bot_username: str = "TryOnTestBot",
        privacy_mode: bool = True,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.privacy_mode = privacy_mode
        self.can_join_groups = True  # BotFather /setjoingroups
        # Time source of `Call.time`, chat actions and the group limit window; tests may swap
        # in a fake clock to move the sliding window without sleeping.
        self.clock: Callable[[], float] = time.monotonic
        self.bot_user: JSON = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Try-On Test Bot",
            "username": bot_username,
        }

        # Recording
        self.calls: list[Call] = []
        self.sent: list[SentMessage] = []
        self.callback_answers: list[JSON] = []
        self.chat_actions: list[ChatActionRecord] = []
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self.downloads: list[str] = []  # file paths the bot downloaded
        self.undelivered: list[JSON] = []  # updates the bot never got (privacy, allowed_updates)
        self.delivered: list[JSON] = []  # updates queued for the bot, in order

        # World
        self.users: dict[int, JSON] = {}
        self.files: dict[str, StoredFile] = {}
        self._chats: dict[int, _Chat] = {}
        self._sent_index: dict[tuple[int, int], SentMessage] = {}
        self._queue: list[JSON] = []
        self._next_update_id = 10_001
        self._file_counter = 0
        self._open_queries: set[str] = set()
        self._allowed_updates: frozenset[str] = DEFAULT_ALLOWED_UPDATES
        self._webhook_url = ""
        self._poll_generation = 0
        # Webhook mode: queued updates are POSTed to the URL, with the secret token header.
        self.webhook_secret = ""
        self.webhook_params: JSON = {}
        self.webhook_last_error = ""
        self._webhook_task: asyncio.Task[None] | None = None

        # Faults
        self._flood_rules: list[_FloodRule] = []
        self._fault_rules: list[_FaultRule] = []
        self._group_limit: tuple[int, float] | None = None
        self._group_sends: dict[int, list[float]] = {}

        # Server
        self._waiters: list[asyncio.Future[None]] = []
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closed = False
        self._methods: dict[str, Callable[[JSON], Awaitable[Any]]] = {
            name.removeprefix("_api_").lower(): getattr(self, name)
            for name in dir(self)
            if name.startswith("_api_")
        }

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_FILE_UPLOAD + 10 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        address = self._runner.addresses[0]
        self._port = int(address[1])

    async def close(self) -> None:
        self._closed = True
        self._notify()
        await self._stop_webhook()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``; the bot uses ``{base_url}/bot``."""
        if not self._port:
            raise RuntimeError("FakeTelegram is not started")
        return f"http://127.0.0.1:{self._port}"

    # -- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _changed(self, timeout: float) -> None:
        """Returns on the next recorded change, or after `timeout` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Waits until `predicate()` is truthy and returns its value.

        Re-checked on every recorded call and every simulated user action.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"condition not met within {timeout} s; recent calls:\n{self.summary()}"
                )
            await self._changed(remaining)

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[SentMessage], bool] | None = None,
        *,
        thread_id: int | None = None,
        since: int = 0,
        timeout: float = 10.0,
    ) -> SentMessage:
        """The first message the bot sent to `chat_id` (from `sent[since:]`) matching."""

        def find() -> SentMessage | None:
            for message in self.sent[since:]:
                if message.chat_id != chat_id:
                    continue
                if thread_id is not None and message.thread_id != thread_id:
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        return await self.wait_for(find, timeout)

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = 10.0,
    ) -> Call:
        """The first finished call of `method` (from `calls[since:]`) matching `predicate`."""

        def find() -> Call | None:
            for call in self.calls[since:]:
                same = call.method.lower() == method.lower() and call.status is not None
                if same and (predicate is None or predicate(call)):
                    return call
            return None

        return await self.wait_for(find, timeout)

    async def wait_consumed(self, timeout: float = 10.0) -> None:
        """Waits until the bot has confirmed every queued update."""
        await self.wait_for(lambda: self.pending_updates == 0, timeout)

    def summary(self, last: int = 25) -> str:
        """Human-readable list of recent calls (without getUpdates) for failure messages."""
        lines = []
        for call in [c for c in self.calls if c.method.lower() != "getupdates"][-last:]:
            shown = {
                k: (f"<{len(v.data)} bytes>" if isinstance(v, UploadedFile) else v)
                for k, v in call.params.items()
            }
            outcome = "pending" if call.status is None else str(call.status)
            if call.description:
                outcome += f" {call.description}"
            lines.append(f"  {call.method} {shown} -> {outcome}")
        lines.append(f"  pending updates: {self.pending_updates}")
        return "\n".join(lines) if lines else "  (no calls)"

    # -- recording helpers -------------------------------------------------------------------

    @property
    def pending_updates(self) -> int:
        """Updates queued for the bot and not yet confirmed by a getUpdates offset."""
        return len(self._queue)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def messages_to(self, chat_id: int, thread_id: int | None = None) -> list[SentMessage]:
        """Messages the bot sent to a chat (only to one topic when `thread_id` is given)."""
        return [
            m
            for m in self.sent
            if m.chat_id == chat_id and (thread_id is None or m.thread_id == thread_id)
        ]

    def last_to(self, chat_id: int) -> SentMessage:
        messages = self.messages_to(chat_id)
        if not messages:
            raise AssertionError(f"the bot sent nothing to chat {chat_id}:\n{self.summary()}")
        return messages[-1]

    def commands_for(self, scope: str = "default", language_code: str = "") -> list[JSON]:
        """Commands set for a scope key ("default", "all_group_chats", "chat:<id>", ...)."""
        return self.commands.get((scope, language_code), [])

    def file(self, file_id: str) -> StoredFile:
        return self.files[file_id]

    # -- faults ------------------------------------------------------------------------------

    def flood(
        self,
        method: str | None = None,
        chat_id: int | None = None,
        retry_after: int = 1,
        count: int = 1,
    ) -> None:
        """The next `count` matching calls answer 429 "Too Many Requests: retry after N".

        `method=None` matches every call that targets a chat (has a chat_id).
        """
        self._flood_rules.append(_FloodRule(method, chat_id, retry_after, count))

    def enforce_group_limit(self, per_minute: int = 20, window: float = 60.0) -> None:
        """429 for sends/edits beyond `per_minute` per group chat in a sliding `window`."""
        self._group_limit = (per_minute, window)

    def fail_next(
        self, method: str, status: int = 500, description: str | None = None, count: int = 1
    ) -> None:
        """The next `count` calls of `method` fail with HTTP `status` (not processed)."""
        if description is None:
            description = "Bad Gateway" if status == 502 else "Internal Server Error"
        self._fault_rules.append(_FaultRule(method, count, status, description))

    def drop_next(self, method: str, count: int = 1, *, after_processing: bool = False) -> None:
        """The next `count` calls of `method` get their connection closed without an answer.

        With `after_processing` the call takes effect first (a lost response).
        """
        self._fault_rules.append(
            _FaultRule(method, count, drop=True, after_processing=after_processing)
        )

    def _take_flood(self, method: str, params: JSON) -> ApiError | None:
        chat_id = _chat_id_param(params)
        for rule in self._flood_rules:
            if rule.remaining <= 0:
                continue
            if rule.method is None and chat_id is None:
                continue
            if rule.method is not None and rule.method.lower() != method:
                continue
            if rule.chat_id is not None and rule.chat_id != chat_id:
                continue
            rule.remaining -= 1
            return _too_many(rule.retry_after)
        limited = method in SEND_METHODS or method in EDIT_METHODS
        if self._group_limit and limited and chat_id is not None and chat_id < 0:
            per_minute, window = self._group_limit
            now = self.clock()
            recent = [t for t in self._group_sends.get(chat_id, []) if now - t < window]
            self._group_sends[chat_id] = recent
            if len(recent) >= per_minute:
                return _too_many(max(1, math.ceil(window - (now - recent[0]))))
        return None

    def _take_fault(self, method: str) -> _FaultRule | None:
        for rule in self._fault_rules:
            if rule.remaining > 0 and rule.method.lower() == method:
                rule.remaining -= 1
                return rule
        return None

    # -- simulated world ---------------------------------------------------------------------

    def user(
        self,
        id: int,
        first_name: str = "U",
        language_code: str | None = "en",
        username: str | None = None,
    ) -> JSON:
        user: JSON = {"id": id, "is_bot": False, "first_name": first_name}
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        self.users[id] = user
        return user

    def private_chat(self, user: JSON) -> JSON:
        info: JSON = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            info["username"] = user["username"]
        chat = self._chats.get(info["id"])
        if chat is None:
            chat = self._chats[info["id"]] = _Chat(info)
        return chat.info

    def group(
        self,
        chat_id: int,
        title: str = "Group",
        *,
        supergroup: bool = False,
        forum: bool = False,
        bot_is_admin: bool = False,
    ) -> JSON:
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        info: JSON = {
            "id": chat_id,
            "type": "supergroup" if supergroup or forum else "group",
            "title": title,
        }
        if forum:
            info["is_forum"] = True
        chat = self._chats.get(chat_id)
        if chat is None:
            self._chats[chat_id] = _Chat(info, bot_is_admin=bot_is_admin)
        else:
            chat.info = info
            chat.bot_is_admin = bot_is_admin
        return info

    def set_bot_admin(self, chat: JSON, is_admin: bool = True) -> None:
        self._chat(chat).bot_is_admin = is_admin

    def set_member_status(self, chat: JSON, user: JSON, status: str) -> None:
        """getChatMember status for a user: "creator", "administrator", "member", "left"."""
        self._chat(chat).members[int(user["id"])] = status

    def block_bot(self, user: JSON, blocked: bool = True) -> None:
        """The user blocks the bot: sends to the private chat answer 403."""
        self._chat(self.private_chat(user)).bot_blocked = blocked

    def remove_bot(self, chat: JSON) -> None:
        """The bot is kicked from a group: sends answer 403."""
        self._chat(chat).bot_removed = True

    def create_topic(self, chat: JSON, user: JSON, name: str = "Topic") -> int:
        """Creates a forum topic (a service update) and returns its message_thread_id."""
        state = self._chat(chat)
        if not state.is_forum:
            raise ValueError("topics exist only in forum supergroups")
        return self._create_topic(state, user, name, announce=True)

    def _create_topic(
        self, chat: _Chat, user: JSON, name: str, *, announce: bool, thread_id: int | None = None
    ) -> int:
        if thread_id is None:
            thread_id = chat.take_message_id()
        else:  # a topic a test refers to by id: keep later message ids above it
            chat.next_message_id = max(chat.next_message_id, thread_id + 1)
        message: JSON = {
            "message_id": thread_id,
            "date": int(time.time()),
            "chat": chat.info,
            "from": user,
            "message_thread_id": thread_id,
            "is_topic_message": True,
            "forum_topic_created": {"name": name, "icon_color": 7322096},
        }
        chat.messages[thread_id] = message
        chat.topics[thread_id] = message
        if announce:
            self._enqueue_message(chat, message)
        return thread_id

    def add_file(
        self,
        data: bytes,
        *,
        kind: str = "document",
        file_name: str | None = None,
        mime_type: str | None = None,
        file_size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        """Registers a file; `file_size` can exceed len(data) to fake a huge file."""
        self._file_counter += 1
        number = self._file_counter
        folder = {"photo": "photos", "voice": "voice", "video_note": "video_notes"}.get(
            kind, f"{kind}s"
        )
        extension = ""
        if file_name and "." in file_name:
            extension = file_name.rsplit(".", 1)[1]
        elif mime_type:
            extension = (mimetypes.guess_extension(mime_type) or "").lstrip(".")
        if kind == "photo":
            extension = "jpg"
        path = f"{folder}/file_{number}" + (f".{extension}" if extension else "")
        stored = StoredFile(
            file_id=f"BQACAgIAAxk{kind[:2].upper()}{number:05d}{secrets.token_hex(8)}",
            file_unique_id=f"AgAD{number:05d}{secrets.token_hex(3)}",
            kind=kind,
            data=data,
            file_size=len(data) if file_size is None else file_size,
            file_path=path,
            mime_type=mime_type,
            file_name=file_name,
            width=width,
            height=height,
        )
        self.files[stored.file_id] = stored
        return stored

    def add_large_file(
        self,
        file_size: int = MAX_DOWNLOAD_SIZE + 1,
        *,
        file_name: str = "huge.jpg",
        mime_type: str = "image/jpeg",
    ) -> StoredFile:
        """A document that claims `file_size` bytes without allocating them."""
        return self.add_file(
            _jpeg(64, 64), file_name=file_name, mime_type=mime_type, file_size=file_size
        )

    def _photo_sizes(self, data: bytes, *, max_side: int | None = None) -> list[JSON]:
        """Registers the PhotoSize files of a photo, smallest first."""
        size = _image_size(data)
        if size is None:
            raise ValueError("photo bytes are not an image Pillow can read")
        width, height = size
        longest = max(width, height)
        variants: list[tuple[bytes, int, int]] = []
        for side in (90, 320, 800):
            if side < longest and (max_side is None or side < max_side):
                variants.append(_jpeg_scaled(data, side))
        if max_side is not None and longest > max_side:
            variants.append(_jpeg_scaled(data, max_side))
        else:
            if not variants:  # tiny image: Telegram still sends a thumbnail
                variants.append(_jpeg_scaled(data, longest))
            variants.append((data, width, height))
        sizes: list[JSON] = []
        files: list[StoredFile] = []
        for blob, w, h in variants:
            stored = self.add_file(blob, kind="photo", mime_type="image/jpeg", width=w, height=h)
            files.append(stored)
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": w,
                    "height": h,
                    "file_size": stored.file_size,
                }
            )
        for stored in files:
            stored.photo_sizes = sizes
        return sizes

    # -- user actions --------------------------------------------------------------------------

    def send_text(
        self,
        chat: JSON,
        user: JSON,
        text: str,
        *,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
    ) -> JSON:
        content: JSON = {"text": text}
        entities = _auto_entities(text, [])
        if entities:
            content["entities"] = entities
        return self._post(chat, user, content, reply_to=reply_to, thread_id=thread_id)

    def send_command(
        self,
        chat: JSON,
        user: JSON,
        command: str,
        args: str = "",
        *,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
        mention: bool | str = False,
    ) -> JSON:
        """`/command[@bot] args`; `mention=True` adds @bot_username, a string another bot."""
        text = "/" + command.lstrip("/")
        if mention:
            text += "@" + (mention if isinstance(mention, str) else self.bot_username)
        if args:
            text += " " + args
        return self.send_text(chat, user, text, reply_to=reply_to, thread_id=thread_id)

    def send_photo(
        self,
        chat: JSON,
        user: JSON,
        jpeg_bytes: bytes,
        *,
        caption: str | None = None,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
        media_group_id: str | None = None,
    ) -> JSON:
        content: JSON = {"photo": self._photo_sizes(jpeg_bytes)}
        self._add_caption(content, caption)
        return self._post(
            chat,
            user,
            content,
            reply_to=reply_to,
            thread_id=thread_id,
            media_group_id=media_group_id,
        )

    def send_album(
        self,
        chat: JSON,
        user: JSON,
        photos: Iterable[bytes],
        *,
        caption: str | None = None,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
    ) -> list[JSON]:
        """Several photos sharing a media_group_id (caption on the first, as clients do)."""
        group_id = str(13_000_000_000_000_000 + secrets.randbelow(10**15))
        return [
            self.send_photo(
                chat,
                user,
                data,
                caption=caption if index == 0 else None,
                reply_to=reply_to,
                thread_id=thread_id,
                media_group_id=group_id,
            )
            for index, data in enumerate(photos)
        ]

    def send_document(
        self,
        chat: JSON,
        user: JSON,
        data: bytes,
        file_name: str,
        mime_type: str,
        *,
        caption: str | None = None,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
        media_group_id: str | None = None,
        file_size: int | None = None,
    ) -> JSON:
        """A file sent "as file"; `file_size` overrides the reported size (for >20 MB tests)."""
        stored = self.add_file(data, file_name=file_name, mime_type=mime_type, file_size=file_size)
        document: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.file_size,
        }
        content: JSON = {"document": document}
        self._add_caption(content, caption)
        return self._post(
            chat,
            user,
            content,
            reply_to=reply_to,
            thread_id=thread_id,
            media_group_id=media_group_id,
        )

    def send_sticker(
        self,
        chat: JSON,
        user: JSON,
        data: bytes | None = None,
        *,
        is_animated: bool = False,
        is_video: bool = False,
        emoji: str = "🙂",
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
    ) -> JSON:
        """A static webp sticker by default; animated (tgs) or video (webm) on request."""
        if data is None:
            data = _webp() if not (is_animated or is_video) else secrets.token_bytes(256)
        mime = "video/webm" if is_video else "application/x-tgsticker" if is_animated else None
        stored = self.add_file(data, kind="sticker", mime_type=mime or "image/webp")
        sticker: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": is_animated,
            "is_video": is_video,
            "emoji": emoji,
            "file_size": stored.file_size,
        }
        return self._post(chat, user, {"sticker": sticker}, reply_to=reply_to, thread_id=thread_id)

    def send_video(
        self,
        chat: JSON,
        user: JSON,
        data: bytes = b"\x00\x00\x00\x18ftypmp42",
        *,
        caption: str | None = None,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
    ) -> JSON:
        stored = self.add_file(data, kind="video", mime_type="video/mp4")
        video: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": 640,
            "height": 480,
            "duration": 3,
            "mime_type": "video/mp4",
            "file_size": stored.file_size,
        }
        content: JSON = {"video": video}
        self._add_caption(content, caption)
        return self._post(chat, user, content, reply_to=reply_to, thread_id=thread_id)

    def send_voice(
        self,
        chat: JSON,
        user: JSON,
        data: bytes = b"OggS\x00voice",
        *,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
    ) -> JSON:
        stored = self.add_file(data, kind="voice", mime_type="audio/ogg")
        voice: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": 2,
            "mime_type": "audio/ogg",
            "file_size": stored.file_size,
        }
        return self._post(chat, user, {"voice": voice}, reply_to=reply_to, thread_id=thread_id)

    def send_location(
        self,
        chat: JSON,
        user: JSON,
        latitude: float = 55.75,
        longitude: float = 37.62,
        *,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
    ) -> JSON:
        location = {"latitude": latitude, "longitude": longitude}
        return self._post(
            chat, user, {"location": location}, reply_to=reply_to, thread_id=thread_id
        )

    def send_as_anonymous_admin(
        self,
        chat: JSON,
        text: str | None = None,
        *,
        photo: bytes | None = None,
        caption: str | None = None,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
    ) -> JSON:
        """A text (or photo) posted by an anonymous group admin."""
        anonymous: JSON = {
            "id": ANONYMOUS_ADMIN_ID,
            "is_bot": True,
            "first_name": "Group",
            "username": "GroupAnonymousBot",
        }
        content: JSON
        if photo is not None:
            content = {"photo": self._photo_sizes(photo)}
            self._add_caption(content, caption)
        else:
            content = {"text": text or ""}
            entities = _auto_entities(text or "", [])
            if entities:
                content["entities"] = entities
        state = self._chat(chat)
        return self._post(
            chat,
            anonymous,
            content,
            reply_to=reply_to,
            thread_id=thread_id,
            sender_chat=state.info,
        )

    def edit_text(self, message: JSON, text: str) -> JSON:
        """The user edits one of their text messages (an edited_message update)."""
        chat_id, message_id = _message_of(message)
        chat = self._chats[chat_id]
        stored = chat.messages[message_id]
        edited = {**stored, "text": text, "edit_date": int(time.time())}
        entities = _auto_entities(text, [])
        edited.pop("entities", None)
        if entities:
            edited["entities"] = entities
        chat.messages[message_id] = edited
        self._enqueue(chat, "edited_message", edited)
        return edited

    def add_member(self, chat: JSON, user: JSON) -> JSON:
        """A user joins a group (a new_chat_members service message)."""
        return self._post(chat, user, {"new_chat_members": [user]})

    def press_button(
        self,
        chat: JSON,
        user: JSON,
        message: JSON | SentMessage,
        data: str,
        *,
        check: bool = True,
    ) -> str:
        """The user presses an inline button; returns the callback query id.

        With `check`, `data` must be the callback_data of a button currently on the message.
        """
        chat_id, message_id = _message_of(message)
        state = self._chat(chat)
        if chat_id != state.id:
            raise ValueError("the message is not in this chat")
        current = state.messages.get(message_id)
        if current is None:
            raise AssertionError(f"message {message_id} does not exist (deleted?)")
        if check:
            rows = (current.get("reply_markup") or {}).get("inline_keyboard") or []
            datas = [b.get("callback_data") for row in rows for b in row]
            if data not in datas:
                raise AssertionError(
                    f"message {message_id} has no button with data {data!r}; buttons: {datas}"
                )
        query_id = str(4_000_000_000_000_000 + secrets.randbelow(10**15))
        self._open_queries.add(query_id)
        query: JSON = {
            "id": query_id,
            "from": user,
            "chat_instance": str(-(abs(state.id) * 7919 % 10**18)),
            "message": current,
            "data": data,
        }
        self._enqueue(state, "callback_query", query)
        return query_id

    def migrate_group_to_supergroup(self, chat: JSON, by: JSON | None = None) -> JSON:
        """Upgrades a basic group; returns the new supergroup chat.

        The old group gets a ``migrate_to_chat_id`` service message and the new one a
        ``migrate_from_chat_id`` one; afterwards calls to the old id answer 400 with
        ``parameters.migrate_to_chat_id``.
        """
        old = self._chat(chat)
        if old.type != "group":
            raise ValueError("only basic groups migrate")
        new_id = -(10**12 + abs(old.id))
        new_info = self.group(new_id, old.info["title"], supergroup=True)
        new = self._chats[new_id]
        new.bot_is_admin = old.bot_is_admin
        new.members = dict(old.members)
        actor = by or next(iter(self.users.values()), None) or self.user(1, "Admin")
        self._post(chat, actor, {"migrate_to_chat_id": new_id})
        old.migrated_to = new_id
        self._post(new_info, actor, {"migrate_from_chat_id": old.id})
        return new_info

    # -- posting and delivery ------------------------------------------------------------------

    def _chat(self, chat: JSON) -> _Chat:
        state = self._chats.get(int(chat["id"]))
        if state is None:
            raise ValueError(f"unknown chat {chat['id']}: create it with group()/private_chat()")
        return state

    @staticmethod
    def _add_caption(content: JSON, caption: str | None) -> None:
        if caption is None:
            return
        content["caption"] = caption
        entities = _auto_entities(caption, [])
        if entities:
            content["caption_entities"] = entities

    def _post(
        self,
        chat: JSON,
        user: JSON,
        content: JSON,
        *,
        reply_to: JSON | SentMessage | None = None,
        thread_id: int | None = None,
        media_group_id: str | None = None,
        sender_chat: JSON | None = None,
    ) -> JSON:
        state = self._chat(chat)
        if state.migrated_to is not None:
            raise ValueError(f"chat {state.id} was migrated to {state.migrated_to}")
        message: JSON = {
            "message_id": 0,
            "date": int(time.time()),
            "chat": state.info,
            "from": user,
        }
        if sender_chat is not None:
            message["sender_chat"] = sender_chat
        replied: JSON | None = None
        if reply_to is not None:
            reply_chat, reply_id = _message_of(reply_to)
            if reply_chat != state.id or reply_id not in state.messages:
                raise ValueError(f"message {reply_id} is not in chat {state.id}")
            replied = state.messages[reply_id]
        if state.is_forum:
            if thread_id is None and replied is not None:
                thread_id = replied.get("message_thread_id")
            if thread_id is not None and thread_id not in state.topics:
                self._create_topic(
                    state, user, f"Topic {thread_id}", announce=False, thread_id=thread_id
                )
            if thread_id is not None:
                message["message_thread_id"] = thread_id
                message["is_topic_message"] = True
                if replied is None:
                    replied = state.topics[thread_id]
        elif state.type == "supergroup" and replied is not None:
            message["message_thread_id"] = replied.get("message_thread_id", replied["message_id"])
        elif thread_id is not None:
            message["message_thread_id"] = thread_id
        if replied is not None:
            message["reply_to_message"] = _without_reply(replied)
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        message.update(content)
        message["message_id"] = state.take_message_id()
        state.messages[message["message_id"]] = message
        self._enqueue_message(state, message)
        return message

    def _enqueue_message(self, chat: _Chat, message: JSON) -> None:
        self._enqueue(chat, "message", message)

    def _visible_to_bot(self, chat: _Chat, message: JSON) -> bool:
        """Privacy mode: what a non-admin bot receives from a group."""
        if not chat.is_group or not self.privacy_mode or chat.bot_is_admin:
            return True
        if SERVICE_KEYS & message.keys():
            return True
        replied = message.get("reply_to_message")
        if replied and replied.get("from", {}).get("id") == self.bot_id:
            return True
        text = message.get("text") or message.get("caption") or ""
        entities = message.get("entities") or message.get("caption_entities") or []
        for entity in entities:
            if entity.get("type") != "bot_command":
                continue
            command = _entity_text(text, entity)
            if "@" not in command or command.split("@", 1)[1].lower() == self.bot_username.lower():
                return True
        return False

    def _enqueue(self, chat: _Chat, kind: str, payload: JSON) -> None:
        update: JSON = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        visible = kind == "callback_query" or self._visible_to_bot(chat, payload)
        if visible:
            self._queue.append(update)
            self.delivered.append(update)
        else:
            self.undelivered.append(update)
        self._notify()

    # -- HTTP --------------------------------------------------------------------------------

    def _check_token(self, token: str) -> ApiError | None:
        token = unquote(token)
        if token == self.token:
            return None
        if re.fullmatch(r"\d+:[\w-]+", token):
            return ApiError(401, "Unauthorized")
        return ApiError(404, "Not Found")

    async def _read_params(self, request: web.Request) -> JSON:
        params: JSON = {key: _parse_value(key, value) for key, value in request.query.items()}
        if not request.body_exists:
            return params
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
            return params
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = UploadedFile(
                    key, value.filename, value.content_type, value.file.read()
                )
            else:
                params[key] = _parse_value(key, str(value))
        return params

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        token_error = self._check_token(request.match_info["token"])
        if token_error is not None:
            return _json_response(token_error.payload(), token_error.code)
        method = request.match_info["method"]
        key = method.lower()
        try:
            params = await self._read_params(request)
        except ApiError as error:
            return _json_response(error.payload(), error.code)
        call = Call(method, params, self.clock())
        self.calls.append(call)
        self._notify()
        status = 200
        body: JSON = {}
        try:
            fault = self._take_fault(key)
            if fault is not None and fault.drop and not fault.after_processing:
                return self._drop(request, call)
            if fault is not None and not fault.drop:
                raise ApiError(fault.status, fault.description)
            flood = self._take_flood(key, params)
            if flood is not None:
                raise flood
            handler = self._methods.get(key)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
            if key in SEND_METHODS or key in EDIT_METHODS:
                chat_id = _chat_id_param(params)
                if chat_id is not None and chat_id < 0:
                    self._group_sends.setdefault(chat_id, []).append(self.clock())
            if fault is not None:  # a lost response: the call took effect
                return self._drop(request, call)
            body = {"ok": True, "result": result}
        except ApiError as error:
            status, body = error.code, error.payload()
            call.description = error.description
        call.status = status
        self._notify()
        return _json_response(body, status)

    def _drop(self, request: web.Request, call: Call) -> web.StreamResponse:
        call.status = 0
        call.description = "connection dropped"
        self._notify()
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        if self._check_token(request.match_info["token"]) is not None:
            return _json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        path = unquote(request.match_info["path"])
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        if stored is None:
            return _json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        self.downloads.append(path)
        self._notify()
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    # -- bot methods: lookup helpers -------------------------------------------------------------

    def _bot_chat(self, params: JSON) -> _Chat:
        raw = _get(params, "chat_id")
        if raw is None:
            raise bad_request("chat_id is empty")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError) as error:
            raise bad_request("chat not found") from error
        chat = self._chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        if chat.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        if chat.bot_blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat.bot_removed:
            kind = "supergroup" if chat.type == "supergroup" else "group"
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        return chat

    def _reply_target(self, chat: _Chat, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = _opt_int(reply, "message_id")
            allow = _bool(reply, "allow_sending_without_reply")
            if reply.get("chat_id") not in (None, chat.id, str(chat.id)):
                target_chat = self._chats.get(int(reply["chat_id"]))
                if target_chat is None:
                    raise bad_request("chat not found")
                chat = target_chat
        else:
            message_id = _opt_int(params, "reply_to_message_id")
            allow = _bool(params, "allow_sending_without_reply")
        if message_id is None:
            return None
        target = chat.messages.get(message_id)
        if target is None and not allow:
            raise bad_request("message to be replied not found")
        return target

    def _sender_fields(self, chat: _Chat, params: JSON) -> tuple[JSON, JSON | None]:
        """Thread and reply fields of a message the bot sends, and the replied message."""
        fields: JSON = {}
        replied = self._reply_target(chat, params)
        thread_id = _opt_int(params, "message_thread_id")
        if chat.is_forum:
            if thread_id is None and replied is not None:
                thread_id = replied.get("message_thread_id")
            if thread_id is not None:
                if thread_id not in chat.topics:
                    raise bad_request("message thread not found")
                fields["message_thread_id"] = thread_id
                fields["is_topic_message"] = True
                if replied is None:
                    replied = chat.topics[thread_id]
        elif thread_id is not None:
            if thread_id not in chat.messages:
                raise bad_request("message thread not found")
            fields["message_thread_id"] = thread_id
        elif chat.type == "supergroup" and replied is not None:
            fields["message_thread_id"] = replied.get("message_thread_id", replied["message_id"])
        if replied is not None:
            fields["reply_to_message"] = _without_reply(replied)
        return fields, replied

    def _record_sent(
        self,
        chat: _Chat,
        params: JSON,
        kind: str,
        content: JSON,
        *,
        media_group_id: str | None = None,
        **extra: Any,
    ) -> JSON:
        """Stores a message the bot sends and returns its Message object."""
        fields, replied = self._sender_fields(chat, params)
        markup = params.get("reply_markup")
        message: JSON = {
            "message_id": chat.take_message_id(),
            "date": int(time.time()),
            "chat": chat.info,
            "from": self.bot_user,
            **fields,
            **content,
        }
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        if _markup_or_none(markup) is not None:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        markup_dict: JSON = markup if isinstance(markup, dict) else {}
        force_reply = bool(markup_dict.get("force_reply"))
        sent = SentMessage(
            message_id=message["message_id"],
            chat_id=chat.id,
            kind=kind,
            date=message["date"],
            message=message,
            params=params,
            thread_id=message.get("message_thread_id"),
            text=message.get("text"),
            caption=message.get("caption"),
            raw_text=_opt_str(params, "text") if kind == "text" else _opt_str(params, "caption"),
            parse_mode=_opt_str(params, "parse_mode"),
            reply_to_message_id=None if replied is None else int(replied["message_id"]),
            reply_markup=markup_dict or None,
            force_reply=force_reply,
            selective=force_reply and _bool(markup_dict, "selective"),
            media_group_id=media_group_id,
            **extra,
        )
        self.sent.append(sent)
        self._sent_index[(chat.id, sent.message_id)] = sent
        return message

    def _text_content(self, params: JSON, key: str, limit: int) -> JSON:
        """`text`/`caption` plus entities, checked like Telegram does."""
        source = _opt_str(params, key)
        entities_key = "entities" if key == "text" else "caption_entities"
        if source is None:
            if key == "text":
                raise bad_request("message text is empty")
            return {}
        explicit = params.get(entities_key)
        text, entities = format_text(
            source,
            _opt_str(params, "parse_mode"),
            explicit if isinstance(explicit, list) else None,
        )
        if not text:
            if key == "text":
                raise bad_request("message text is empty")
            return {}
        if _utf16_len(text) > limit:
            raise bad_request(
                "message is too long" if key == "text" else "message caption is too long"
            )
        content: JSON = {key: text}
        if entities:
            content[entities_key] = entities
        return content

    def _input_file(
        self, params: JSON, key: str, kind: str
    ) -> tuple[bytes, StoredFile | None, UploadedFile | None]:
        """The bytes of an uploaded file part or an existing file_id."""
        value = params.get(key)
        if isinstance(value, str) and value.startswith("attach://"):
            value = params.get(value.removeprefix("attach://"))
        if isinstance(value, UploadedFile):
            if not value.data:
                raise bad_request("file must be non-empty")
            return value.data, None, value
        if not value:
            raise bad_request(f"there is no {key} in the request")
        stored = self.files.get(str(value))
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if kind == "photo" and stored.kind != "photo":
            raise bad_request("type of file mismatch")
        return stored.data, stored, None

    def _photo_content(self, params: JSON, key: str) -> tuple[JSON, JSON]:
        data, stored, upload = self._input_file(params, key, "photo")
        if stored is not None and stored.photo_sizes is not None:
            sizes = stored.photo_sizes
        else:
            if len(data) > MAX_PHOTO_UPLOAD:
                raise bad_request("PHOTO_SAVE_FILE_INVALID")
            size = _image_size(data)
            if size is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            width, height = size
            if width + height > 10_000 or max(width, height) > 20 * min(width, height):
                raise bad_request("PHOTO_INVALID_DIMENSIONS")
            sizes = self._photo_sizes(data, max_side=PHOTO_SIDE)
        extra: JSON = {
            "photo": data,
            "file_id": sizes[-1]["file_id"],
            "file_name": upload.filename if upload else None,
            "mime_type": upload.content_type if upload else "image/jpeg",
        }
        return {"photo": sizes}, extra

    def _document_content(self, params: JSON, key: str) -> tuple[JSON, JSON]:
        data, stored, upload = self._input_file(params, key, "document")
        if stored is None:
            assert upload is not None
            if len(data) > MAX_FILE_UPLOAD:
                raise ApiError(413, "Request Entity Too Large")
            name = upload.filename or "file"
            mime = (
                upload.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
            )
            stored = self.add_file(data, file_name=name, mime_type=mime)
        document: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        extra: JSON = {
            "document": data,
            "file_id": stored.file_id,
            "file_name": stored.file_name,
            "mime_type": stored.mime_type,
        }
        return {"document": document}, extra

    def _editable(self, params: JSON) -> tuple[_Chat, JSON]:
        if _get(params, "inline_message_id") is not None:
            raise bad_request("message to edit not found")
        chat = self._bot_chat(params)
        message_id = _req_int(params, "message_id")
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise bad_request("message can't be edited")
        return chat, message

    def _apply_edit(self, chat: _Chat, old: JSON, new: JSON, edit_text: str | None) -> JSON:
        new["edit_date"] = int(time.time())
        chat.messages[int(old["message_id"])] = new
        sent = self._sent_index.get((chat.id, int(old["message_id"])))
        if sent is not None:
            sent.message = new
            sent.text = new.get("text")
            sent.caption = new.get("caption")
            sent.reply_markup = new.get("reply_markup")
            if edit_text is not None:
                sent.edits.append(edit_text)
        return new

    # -- bot methods ---------------------------------------------------------------------------
    # Each `_api_<name>` serves the Bot API method <name> (case-insensitive, like Telegram).

    async def _api_getMe(self, params: JSON) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _api_logOut(self, params: JSON) -> bool:
        return True

    async def _api_close(self, params: JSON) -> bool:
        return True

    async def _api_deleteWebhook(self, params: JSON) -> bool:
        self._webhook_url = ""
        await self._stop_webhook()
        if _bool(params, "drop_pending_updates"):
            self.undelivered.extend(self._queue)
            self._queue.clear()
        return True

    async def _api_setWebhook(self, params: JSON) -> bool:
        await self._stop_webhook()
        self._webhook_url = _opt_str(params, "url") or ""
        self.webhook_secret = _opt_str(params, "secret_token") or ""
        self.webhook_params = dict(params)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            allowed = json.loads(allowed)
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
        if _bool(params, "drop_pending_updates"):
            self.undelivered.extend(self._queue)
            self._queue.clear()
        if self._webhook_url:
            self._webhook_task = asyncio.create_task(self._deliver_to_webhook())
        return True

    async def _api_getWebhookInfo(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": self.pending_updates,
        }
        if self.webhook_last_error:
            info["last_error_date"] = int(time.time())
            info["last_error_message"] = self.webhook_last_error
        return info

    async def _stop_webhook(self) -> None:
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()  # it also stops by itself once it is no longer the current one
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_to_webhook(self) -> None:
        """Like Telegram: one update at a time, in order, retried until the bot answers 2xx."""
        import aiohttp

        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret}
        me = asyncio.current_task()
        async with aiohttp.ClientSession() as session:
            while not self._closed and self._webhook_task is me:
                for update in [
                    u for u in self._queue if _update_type(u) not in self._allowed_updates
                ]:
                    self._queue.remove(update)
                    self.undelivered.append(update)
                if not self._queue:
                    await self._changed(1.0)
                    continue
                update = self._queue[0]
                try:
                    async with session.post(
                        self._webhook_url, json=update, headers=headers
                    ) as response:
                        status = response.status
                except aiohttp.ClientError as error:
                    status, self.webhook_last_error = 0, f"Connection failed: {error}"
                if 200 <= status < 300:
                    if self._queue and self._queue[0] is update:
                        self._queue.pop(0)
                    self.webhook_last_error = ""
                    self._notify()
                    continue
                if status:
                    self.webhook_last_error = f"Wrong response from the webhook: {status}"
                await asyncio.sleep(0.05)

    async def _api_getUpdates(self, params: JSON) -> list[JSON]:
        if self._webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _opt_int(params, "offset")
        limit = min(max(_opt_int(params, "limit") or 100, 1), 100)
        timeout = max(_opt_float(params, "timeout") or 0.0, 0.0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else DEFAULT_ALLOWED_UPDATES
        if offset is not None and offset < 0:
            self._queue = self._queue[offset:]
        elif offset:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older held getUpdates now ends with 409 Conflict, as on Telegram
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for update in [u for u in self._queue if _update_type(u) not in self._allowed_updates]:
                self._queue.remove(update)
                self.undelivered.append(update)
            if self._queue or self._closed:
                return self._queue[:limit]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await self._changed(remaining)
            if generation != self._poll_generation:
                raise ApiError(409, CONFLICT_POLLING)

    async def _api_sendMessage(self, params: JSON) -> JSON:
        chat = self._bot_chat(params)
        content = self._text_content(params, "text", MAX_TEXT_LENGTH)
        return self._record_sent(chat, params, "text", content)

    async def _api_sendPhoto(self, params: JSON) -> JSON:
        chat = self._bot_chat(params)
        caption = self._text_content(params, "caption", MAX_CAPTION_LENGTH)
        content, extra = self._photo_content(params, "photo")
        return self._record_sent(chat, params, "photo", content | caption, **extra)

    async def _api_sendDocument(self, params: JSON) -> JSON:
        chat = self._bot_chat(params)
        caption = self._text_content(params, "caption", MAX_CAPTION_LENGTH)
        content, extra = self._document_content(params, "document")
        return self._record_sent(chat, params, "document", content | caption, **extra)

    async def _api_sendMediaGroup(self, params: JSON) -> list[JSON]:
        chat = self._bot_chat(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad_request("wrong number of messages in the media group")
        group_id = str(13_000_000_000_000_000 + secrets.randbelow(10**15))
        prepared: list[tuple[str, JSON, JSON, JSON]] = []
        for item in media:
            kind = str(item.get("type"))
            if kind not in ("photo", "document"):
                raise bad_request(f"unsupported media type {kind} in the fake")
            item_params = {**params, **item}
            caption = self._text_content(item_params, "caption", MAX_CAPTION_LENGTH)
            if kind == "photo":
                content, extra = self._photo_content(item_params, "media")
            else:
                content, extra = self._document_content(item_params, "media")
            prepared.append((kind, item_params, content | caption, extra))
        return [
            self._record_sent(chat, item_params, kind, content, media_group_id=group_id, **extra)
            for kind, item_params, content, extra in prepared
        ]

    async def _api_sendChatAction(self, params: JSON) -> bool:
        chat = self._bot_chat(params)
        action = _opt_str(params, "action")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        thread_id = _opt_int(params, "message_thread_id")
        if thread_id is not None and chat.is_forum and thread_id not in chat.topics:
            raise bad_request("message thread not found")
        self.chat_actions.append(ChatActionRecord(chat.id, action, thread_id, self.clock()))
        return True

    async def _api_editMessageText(self, params: JSON) -> JSON:
        chat, message = self._editable(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        content = self._text_content(params, "text", MAX_TEXT_LENGTH)
        markup = _markup_or_none(params.get("reply_markup"))
        if (
            content["text"] == message["text"]
            and content.get("entities") == message.get("entities")
            and markup == message.get("reply_markup")
        ):
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        new = {k: v for k, v in message.items() if k not in ("entities", "reply_markup")}
        new.update(content)
        if markup is not None:
            new["reply_markup"] = markup
        return self._apply_edit(chat, message, new, content["text"])

    async def _api_editMessageCaption(self, params: JSON) -> JSON:
        chat, message = self._editable(params)
        if "text" in message:
            raise bad_request("there is no caption in the message to edit")
        content = self._text_content(params, "caption", MAX_CAPTION_LENGTH)
        markup = _markup_or_none(params.get("reply_markup"))
        if (
            content.get("caption") == message.get("caption")
            and content.get("caption_entities") == message.get("caption_entities")
            and markup == message.get("reply_markup")
        ):
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        new = {
            k: v
            for k, v in message.items()
            if k not in ("caption", "caption_entities", "reply_markup")
        }
        new.update(content)
        if markup is not None:
            new["reply_markup"] = markup
        return self._apply_edit(chat, message, new, content.get("caption", ""))

    async def _api_editMessageReplyMarkup(self, params: JSON) -> JSON:
        chat, message = self._editable(params)
        markup = _markup_or_none(params.get("reply_markup"))
        if markup == message.get("reply_markup"):
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        new = {k: v for k, v in message.items() if k != "reply_markup"}
        if markup is not None:
            new["reply_markup"] = markup
        return self._apply_edit(chat, message, new, None)

    async def _api_deleteMessage(self, params: JSON) -> bool:
        chat = self._bot_chat(params)
        self._delete(chat, _req_int(params, "message_id"))
        return True

    async def _api_deleteMessages(self, params: JSON) -> bool:
        chat = self._bot_chat(params)
        ids = params.get("message_ids")
        if not isinstance(ids, list) or not ids:
            raise bad_request("message_ids is empty")
        for message_id in ids:
            with contextlib.suppress(ApiError):
                self._delete(chat, int(message_id))
        return True

    def _delete(self, chat: _Chat, message_id: int) -> None:
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request("message to delete not found")
        own = message.get("from", {}).get("id") == self.bot_id
        if not own and chat.is_group and not chat.bot_is_admin:
            raise bad_request("message can't be deleted")
        del chat.messages[message_id]
        sent = self._sent_index.get((chat.id, message_id))
        if sent is not None:
            sent.deleted = True

    async def _api_answerCallbackQuery(self, params: JSON) -> bool:
        query_id = _opt_str(params, "callback_query_id")
        if query_id not in self._open_queries:
            raise bad_request(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        self._open_queries.discard(query_id)
        self.callback_answers.append(dict(params))
        return True

    async def _api_getFile(self, params: JSON) -> JSON:
        file_id = _opt_str(params, "file_id")
        if file_id is None:
            raise bad_request("file_id is empty")
        stored = self.files.get(file_id)
        if stored is None:
            raise bad_request("invalid file_id")
        if stored.file_size > MAX_DOWNLOAD_SIZE:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    async def _api_setMyCommands(self, params: JSON) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("commands is empty")
        for command in commands:
            if not _BOT_COMMAND_RE.match(str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("command description must be non-empty")
        key = (_scope_key(params.get("scope")), _opt_str(params, "language_code") or "")
        self.commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _api_deleteMyCommands(self, params: JSON) -> bool:
        key = (_scope_key(params.get("scope")), _opt_str(params, "language_code") or "")
        self.commands.pop(key, None)
        return True

    async def _api_getMyCommands(self, params: JSON) -> list[JSON]:
        key = (_scope_key(params.get("scope")), _opt_str(params, "language_code") or "")
        return self.commands.get(key, [])

    async def _api_setMyDescription(self, params: JSON) -> bool:
        self._set_text(self.descriptions, params, "description", 512)
        return True

    async def _api_setMyShortDescription(self, params: JSON) -> bool:
        self._set_text(self.short_descriptions, params, "short_description", 120)
        return True

    async def _api_getMyDescription(self, params: JSON) -> JSON:
        language = _opt_str(params, "language_code") or ""
        return {"description": self.descriptions.get(language, "")}

    async def _api_getMyShortDescription(self, params: JSON) -> JSON:
        language = _opt_str(params, "language_code") or ""
        return {"short_description": self.short_descriptions.get(language, "")}

    @staticmethod
    def _set_text(store: dict[str, str], params: JSON, key: str, limit: int) -> None:
        language = _opt_str(params, "language_code") or ""
        value = _opt_str(params, key) or ""
        if len(value) > limit:
            raise bad_request(f"{key} is too long")
        if value:
            store[language] = value
        else:
            store.pop(language, None)

    async def _api_getChat(self, params: JSON) -> JSON:
        chat = self._bot_chat(params)
        return {
            **chat.info,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _api_getChatMember(self, params: JSON) -> JSON:
        chat = self._bot_chat(params)
        user_id = _req_int(params, "user_id")
        user = self.bot_user if user_id == self.bot_id else self.users.get(user_id)
        if user is None:
            raise bad_request("user not found")
        if user_id == self.bot_id:
            status = "administrator" if chat.bot_is_admin else "member"
        else:
            status = chat.members.get(user_id, "member")
        if status == "administrator":
            rights = [
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
                "can_pin_messages",
                "can_manage_topics",
            ]
            return {
                "status": status,
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_promote_members": False,
                **dict.fromkeys(rights, True),
            }
        if status == "creator":
            return {"status": status, "user": user, "is_anonymous": False}
        return {"status": status, "user": user}


def _chat_id_param(params: JSON) -> int | None:
    value = params.get("chat_id")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _too_many(retry_after: int) -> ApiError:
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


def _json_response(body: JSON, status: int) -> web.Response:
    return web.json_response(body, status=status)
