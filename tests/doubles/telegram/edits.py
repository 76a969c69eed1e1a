"""Edits and deletions of the bot's messages: editMessageText/Caption/ReplyMarkup,
deleteMessage(s).

Plays Telegram's answers: "message is not modified" for an identical edit, "message to edit
not found", "there is no text in the message to edit", "message can't be deleted" for others'
messages in a group where the bot is not an admin. `SentMessage` records follow every edit.
"""

from __future__ import annotations

import contextlib
import time

from tests.doubles.telegram.messages import Messages
from tests.doubles.telegram.params import get, markup_or_none, req_int
from tests.doubles.telegram.records import (
    JSON,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    NOT_MODIFIED,
    ApiError,
    ChatState,
    bad_request,
)


class Edits(Messages):
    """Editing and deleting messages."""

    def _editable(self, params: JSON) -> tuple[ChatState, JSON]:
        if get(params, "inline_message_id") is not None:
            raise bad_request("message to edit not found")
        chat = self._bot_chat(params)
        message_id = req_int(params, "message_id")
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise bad_request("message can't be edited")
        return chat, message

    def _apply_edit(self, chat: ChatState, old: JSON, new: JSON, edit_text: str | None) -> JSON:
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

    async def _api_editMessageText(self, params: JSON) -> JSON:
        chat, message = self._editable(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        content = self._text_content(params, "text", MAX_TEXT_LENGTH)
        markup = markup_or_none(params.get("reply_markup"))
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
        markup = markup_or_none(params.get("reply_markup"))
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
        markup = markup_or_none(params.get("reply_markup"))
        if markup == message.get("reply_markup"):
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        new = {k: v for k, v in message.items() if k != "reply_markup"}
        if markup is not None:
            new["reply_markup"] = markup
        return self._apply_edit(chat, message, new, None)

    async def _api_deleteMessage(self, params: JSON) -> bool:
        chat = self._bot_chat(params)
        self._delete(chat, req_int(params, "message_id"))
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

    def _delete(self, chat: ChatState, message_id: int) -> None:
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
