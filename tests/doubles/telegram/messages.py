"""Sending: sendMessage, sendPhoto, sendDocument, sendMediaGroup, sendPoll, sendChatAction.

Plays Telegram's checks on what the bot sends: chat lookup (unknown chat, migrated group →
400 with ``migrate_to_chat_id``, blocked user → 403 "Forbidden: bot was blocked by the user",
kicked bot → 403), replies (``reply_parameters`` or the older ``reply_to_message_id``), forum
topics (unknown or deleted topic → 400 "message thread not found", closed topic → 400
"TOPIC_CLOSED"), text/caption limits and HTML parse errors. Every message sent is recorded in
`sent` as a `SentMessage` (bot-api-wire.md "Encodings" for the multipart/``attach://`` form).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.doubles.telegram.formatting import format_text, utf16_len
from tests.doubles.telegram.params import flag, get, markup_or_none, opt_int, opt_str, without_reply
from tests.doubles.telegram.records import (
    BLOCKED,
    CHAT_ACTIONS,
    JSON,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    THREAD_NOT_FOUND,
    TOPIC_CLOSED,
    ApiError,
    ChatActionRecord,
    ChatState,
    SentMessage,
    bad_request,
)
from tests.doubles.telegram.updates import Updates

MAX_POLL_QUESTION = 300
MAX_POLL_OPTION = 100
MAX_POLL_OPTIONS = 12


class Messages(Updates):
    """The Bot API send methods and the checks they share."""

    def _bot_chat(self, params: JSON) -> ChatState:
        raw = get(params, "chat_id")
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
            raise ApiError(403, BLOCKED)
        if chat.bot_removed:
            kind = "supergroup" if chat.type == "supergroup" else "group"
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        return chat

    def _reply_target(self, chat: ChatState, params: JSON) -> JSON | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = opt_int(reply, "message_id")
            allow = flag(reply, "allow_sending_without_reply")
            if reply.get("chat_id") not in (None, chat.id, str(chat.id)):
                target_chat = self._chats.get(int(reply["chat_id"]))
                if target_chat is None:
                    raise bad_request("chat not found")
                chat = target_chat
        else:
            message_id = opt_int(params, "reply_to_message_id")
            allow = flag(params, "allow_sending_without_reply")
        if message_id is None:
            return None
        target = chat.messages.get(message_id)
        if target is None and not allow:
            raise bad_request("message to be replied not found")
        return target

    def _sender_fields(self, chat: ChatState, params: JSON) -> tuple[JSON, JSON | None]:
        """Thread and reply fields of a message the bot sends, and the replied message."""
        fields: JSON = {}
        replied = self._reply_target(chat, params)
        thread_id = opt_int(params, "message_thread_id")
        if chat.is_forum:
            if thread_id is None and replied is not None:
                thread_id = replied.get("message_thread_id")
            if thread_id is not None:
                if thread_id not in chat.topics:
                    raise ApiError(400, THREAD_NOT_FOUND)
                if thread_id in chat.closed_topics:
                    raise ApiError(400, TOPIC_CLOSED)
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
            fields["reply_to_message"] = without_reply(replied)
        return fields, replied

    def _record_sent(
        self,
        chat: ChatState,
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
        if markup_or_none(markup) is not None:
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
            raw_text=opt_str(params, "text") if kind == "text" else opt_str(params, "caption"),
            parse_mode=opt_str(params, "parse_mode"),
            reply_to_message_id=None if replied is None else int(replied["message_id"]),
            reply_markup=markup_dict or None,
            force_reply=force_reply,
            selective=force_reply and flag(markup_dict, "selective"),
            media_group_id=media_group_id,
            **extra,
        )
        self.sent.append(sent)
        self._sent_index[(chat.id, sent.message_id)] = sent
        return message

    def _text_content(self, params: JSON, key: str, limit: int) -> JSON:
        """`text`/`caption` plus entities, checked like Telegram does."""
        source = opt_str(params, key)
        entities_key = "entities" if key == "text" else "caption_entities"
        if source is None:
            if key == "text":
                raise bad_request("message text is empty")
            return {}
        explicit = params.get(entities_key)
        text, entities = format_text(
            source,
            opt_str(params, "parse_mode"),
            explicit if isinstance(explicit, list) else None,
        )
        if not text:
            if key == "text":
                raise bad_request("message text is empty")
            return {}
        if utf16_len(text) > limit:
            raise bad_request(
                "message is too long" if key == "text" else "message caption is too long"
            )
        content: JSON = {key: text}
        if entities:
            content[entities_key] = entities
        return content

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
        group_id = _media_group_id()
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
        action = opt_str(params, "action")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        thread_id = opt_int(params, "message_thread_id")
        if thread_id is not None and chat.is_forum and thread_id not in chat.topics:
            raise ApiError(400, THREAD_NOT_FOUND)
        if thread_id is not None and chat.is_forum and thread_id in chat.closed_topics:
            raise ApiError(400, TOPIC_CLOSED)
        self.chat_actions.append(ChatActionRecord(chat.id, action, thread_id, self.clock()))
        return True

    async def _api_sendPoll(self, params: JSON) -> JSON:
        """sendPoll: ``question``, ``options`` (InputPollOption objects or strings),
        ``is_anonymous`` (default true), ``type``, ``allows_multiple_answers``."""
        chat = self._bot_chat(params)
        question = (opt_str(params, "question") or "").strip()
        if not question:
            raise bad_request("poll question must be non-empty")
        if len(question) > MAX_POLL_QUESTION:
            raise bad_request("poll question length must not exceed 300")
        raw = params.get("options")
        if not isinstance(raw, list) or len(raw) < 2:
            raise bad_request("poll must have at least 2 option")
        if len(raw) > MAX_POLL_OPTIONS:
            raise bad_request(f"poll can't have more than {MAX_POLL_OPTIONS} options")
        options: list[JSON] = []
        for option in raw:
            text = str(option.get("text", "") if isinstance(option, dict) else option).strip()
            if not text:
                raise bad_request("poll options must be non-empty")
            if len(text) > MAX_POLL_OPTION:
                raise bad_request("poll options length must not exceed 100")
            options.append({"text": text, "voter_count": 0, "persistent_id": str(len(options))})
        kind = opt_str(params, "type") or "regular"
        if kind not in ("regular", "quiz"):
            raise bad_request("wrong poll type specified")
        is_anonymous = True if params.get("is_anonymous") is None else flag(params, "is_anonymous")
        multiple = flag(params, "allows_multiple_answers")
        if kind == "quiz" and multiple:
            raise bad_request("quiz poll can't allow multiple answers")
        poll: JSON = {
            "id": str(5_000_000_000_000_000_000 + secrets.randbelow(10**18)),
            "question": question,
            "options": options,
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": is_anonymous,
            "type": kind,
            "allows_multiple_answers": multiple,
            "allows_revoting": kind == "regular",  # Bot API 9.6
            "members_only": False,  # Bot API 10.0
        }
        if kind == "quiz":
            correct = opt_int(params, "correct_option_id")
            if correct is None or not 0 <= correct < len(options):
                raise bad_request("wrong correct option id specified")
            poll["correct_option_id"] = correct
        return self._record_sent(chat, params, "poll", {"poll": poll}, poll=poll)


def _media_group_id() -> str:
    return str(13_000_000_000_000_000 + secrets.randbelow(10**15))
