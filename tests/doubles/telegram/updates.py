"""The simulated world around the bot: users, chats, topics, and what users do.

Builds the Update/Message/CallbackQuery objects Telegram would send (minimum fields per
bot-api-wire.md "Minimum object fields"), numbers messages per chat, and applies privacy mode
(telegram-ptb.md A5: in groups a non-admin bot only gets commands for it, replies to its
messages and service messages; everything else lands in `undelivered`). Albums arrive as
separate updates sharing a ``media_group_id`` with no end marker (telegram-ptb.md A4).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Sequence

from tests.doubles.telegram.files import Files, webp
from tests.doubles.telegram.formatting import auto_entities, entity_text
from tests.doubles.telegram.params import message_of, without_reply
from tests.doubles.telegram.records import (
    ANONYMOUS_ADMIN_ID,
    JSON,
    SERVICE_KEYS,
    AlbumItem,
    ChatState,
    SentMessage,
)


def _media_group_id() -> str:
    return str(13_000_000_000_000_000 + secrets.randbelow(10**15))


class Updates(Files):
    """Simulated users and chats; every user action queues the update Telegram would send."""

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
            chat = self._chats[info["id"]] = ChatState(info)
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
            self._chats[chat_id] = ChatState(info, bot_is_admin=bot_is_admin)
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
        self,
        chat: ChatState,
        user: JSON,
        name: str,
        *,
        announce: bool,
        thread_id: int | None = None,
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

    def close_topic(
        self, chat: JSON, thread_id: int, by: JSON | None = None, *, closed: bool = True
    ) -> None:
        """A forum topic is closed (or reopened): the bot's sends and chat actions there answer
        400 "Bad Request: TOPIC_CLOSED". Announced as a forum_topic_closed/reopened service
        message when `by` (the admin) is given."""
        state = self._chat(chat)
        if thread_id not in state.topics:
            raise ValueError(f"no topic {thread_id} in chat {state.id}")
        if closed:
            state.closed_topics.add(thread_id)
        else:
            state.closed_topics.discard(thread_id)
        if by is not None:
            key = "forum_topic_closed" if closed else "forum_topic_reopened"
            self._post(chat, by, {key: {}}, thread_id=thread_id)

    def delete_topic(self, chat: JSON, thread_id: int) -> None:
        """A forum topic is deleted with its messages: the bot's calls that name it answer
        400 "Bad Request: message thread not found" (no update is sent, as on Telegram)."""
        state = self._chat(chat)
        state.topics.pop(thread_id, None)
        state.closed_topics.discard(thread_id)
        for message_id, message in list(state.messages.items()):
            if message.get("message_thread_id") == thread_id or message_id == thread_id:
                del state.messages[message_id]
                sent = self._sent_index.get((state.id, message_id))
                if sent is not None:
                    sent.deleted = True

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
        entities = auto_entities(text, [])
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
        group_id = _media_group_id()
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

    async def send_album_items(
        self,
        chat: JSON,
        user: JSON,
        items: Sequence[bytes | AlbumItem],
        *,
        reply_to: JSON | SentMessage | None = None,
        reply_to_all: bool = False,
        thread_id: int | None = None,
        gap: float = 0.005,
    ) -> list[JSON]:
        """An album of 2–10 photos and/or documents, as Telegram delivers it: consecutive
        message ids sharing one ``media_group_id``, each item its own update, `gap` seconds
        apart, no end marker. `bytes` items are photos; `AlbumItem` sets the kind and a caption
        per item. `reply_to` goes on the first item only, or on every item with `reply_to_all`.
        Privacy mode applies per item: in a group, items that neither reply to the bot nor carry
        a command for it do not reach a privacy-mode bot (they land in `undelivered`).
        """
        if not 2 <= len(items) <= 10:
            raise ValueError("an album has 2 to 10 items")
        state = self._chat(chat)
        group_id = _media_group_id()
        if state.is_forum and thread_id is None and reply_to is not None:
            replied_chat, replied_id = message_of(reply_to)
            replied = state.messages.get(replied_id) if replied_chat == state.id else None
            thread_id = None if replied is None else replied.get("message_thread_id")
        messages: list[JSON] = []
        for index, raw in enumerate(items):
            item = raw if isinstance(raw, AlbumItem) else AlbumItem(raw)
            content: JSON
            if item.kind == "photo":
                content = {"photo": self._photo_sizes(item.data)}
            elif item.kind == "document":
                stored = self.add_file(
                    item.data, file_name=item.file_name, mime_type=item.mime_type
                )
                content = {
                    "document": {
                        "file_id": stored.file_id,
                        "file_unique_id": stored.file_unique_id,
                        "file_name": item.file_name,
                        "mime_type": item.mime_type,
                        "file_size": stored.file_size,
                    }
                }
            else:
                raise ValueError(f"album items are photos or documents, not {item.kind!r}")
            self._add_caption(content, item.caption)
            messages.append(
                self._post(
                    chat,
                    user,
                    content,
                    reply_to=reply_to if index == 0 or reply_to_all else None,
                    thread_id=thread_id,
                    media_group_id=group_id,
                    enqueue=False,
                )
            )
        for index, message in enumerate(messages):
            if index and gap > 0:
                await asyncio.sleep(gap)
            self._enqueue_message(state, message)
        return messages

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
            data = webp() if not (is_animated or is_video) else secrets.token_bytes(256)
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
            entities = auto_entities(text or "", [])
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
        chat_id, message_id = message_of(message)
        chat = self._chats[chat_id]
        stored = chat.messages[message_id]
        edited = {**stored, "text": text, "edit_date": int(time.time())}
        entities = auto_entities(text, [])
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
        chat_id, message_id = message_of(message)
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

    def _chat(self, chat: JSON) -> ChatState:
        state = self._chats.get(int(chat["id"]))
        if state is None:
            raise ValueError(f"unknown chat {chat['id']}: create it with group()/private_chat()")
        return state

    @staticmethod
    def _add_caption(content: JSON, caption: str | None) -> None:
        if caption is None:
            return
        content["caption"] = caption
        entities = auto_entities(caption, [])
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
        enqueue: bool = True,
    ) -> JSON:
        """Stores a user's message (next message id of the chat) and, with `enqueue`, queues
        its update for the bot."""
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
            reply_chat, reply_id = message_of(reply_to)
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
            message["reply_to_message"] = without_reply(replied)
        if media_group_id is not None:
            message["media_group_id"] = media_group_id
        message.update(content)
        message["message_id"] = state.take_message_id()
        state.messages[message["message_id"]] = message
        if enqueue:
            self._enqueue_message(state, message)
        return message

    def _enqueue_message(self, chat: ChatState, message: JSON) -> None:
        self._enqueue(chat, "message", message)

    def _visible_to_bot(self, chat: ChatState, message: JSON) -> bool:
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
            command = entity_text(text, entity)
            if "@" not in command or command.split("@", 1)[1].lower() == self.bot_username.lower():
                return True
        return False

    def _enqueue(self, chat: ChatState, kind: str, payload: JSON) -> None:
        update: JSON = {"update_id": self._next_update_id, kind: payload}
        self._next_update_id += 1
        visible = kind == "callback_query" or self._visible_to_bot(chat, payload)
        if visible:
            self._queue.append(update)
            self.delivered.append(update)
        else:
            self.undelivered.append(update)
        self._notify()
