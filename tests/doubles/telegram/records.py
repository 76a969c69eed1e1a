"""Records and constants of the Bot API double: errors, calls, files and the messages the bot sent.

Error texts are Telegram's own (``Bad Request: ...``); limits are the cloud Bot API's
(reference: ``/work/shared/reference/telegram-ptb.md`` A4, ``bot-api-wire.md`` "Responses").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

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
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
BLOCKED = "Forbidden: bot was blocked by the user"
TOPIC_CLOSED = "Bad Request: TOPIC_CLOSED"
THREAD_NOT_FOUND = "Bad Request: message thread not found"
SECRET_TOKEN_HEADER = "X-Telegram-Bot-Api-Secret-Token"

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
        "sendpoll",
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
        "options",
        "question_entities",
        "explanation_entities",
    }
)


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

    @property
    def chat_id(self) -> int | None:
        """The ``chat_id`` parameter as an int (None when absent or a @username)."""
        return chat_id_param(self.params)


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
    poll: JSON | None = None  # sendPoll: the Poll object as returned
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
class FloodRule:
    method: str | None
    chat_id: int | None
    retry_after: int
    remaining: int


@dataclass
class FaultRule:
    method: str
    remaining: int
    status: int = 500
    description: str = ""
    drop: bool = False
    after_processing: bool = False
    delay: float = 0.0  # process, then hold the answer this long (beyond a client timeout)


@dataclass
class ChatState:
    info: JSON
    bot_is_admin: bool = False
    next_message_id: int = 1
    messages: dict[int, JSON] = field(default_factory=dict)
    topics: dict[int, JSON] = field(default_factory=dict)  # thread id -> forum_topic_created msg
    closed_topics: set[int] = field(default_factory=set)
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


@dataclass
class WebhookConfig:
    """What the bot set with ``setWebhook`` (empty `url`: no webhook, long polling)."""

    url: str = ""
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    drop_pending_updates: bool = False
    ip_address: str | None = None


@dataclass
class AlbumItem:
    """One item of an album a user sends: a photo (default) or a document ("send as file")."""

    data: bytes
    kind: str = "photo"  # "photo" or "document"
    caption: str | None = None
    file_name: str = "photo.jpg"
    mime_type: str = "image/jpeg"


def chat_id_param(params: JSON) -> int | None:
    value = params.get("chat_id")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def too_many(retry_after: int) -> ApiError:
    """429 flood control, with ``parameters.retry_after`` (PTB raises RetryAfter)."""
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )
