"""A simulated Telegram user, to keep end-to-end tests short and readable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import jpeg

JSON = dict[str, Any]


class Actor:
    """One user in one chat (and, in forums, one topic)."""

    def __init__(
        self,
        tg: FakeTelegram,
        user_id: int,
        *,
        chat: JSON | None = None,
        lang: str | None = "en",
        name: str = "Ann",
        thread_id: int | None = None,
    ) -> None:
        self.tg = tg
        self.user = tg.user(user_id, name, language_code=lang)
        self.chat = chat if chat is not None else tg.private_chat(self.user)
        self.thread_id = thread_id
        self.last_prompt: SentMessage | None = None
        self.last_sent: JSON | None = None

    @property
    def chat_id(self) -> int:
        return int(self.chat["id"])

    @property
    def in_group(self) -> bool:
        return self.chat_id < 0

    def _reply_target(self, reply_to: JSON | SentMessage | None) -> JSON | SentMessage | None:
        # In groups a photo only reaches a privacy-mode bot as a reply to the bot's prompt.
        if reply_to is None and self.in_group:
            return self.last_prompt
        return reply_to

    def _since(self) -> int:
        return len(self.tg.sent)

    async def next_from_bot(
        self,
        since: int,
        predicate: Callable[[SentMessage], bool] | None = None,
        timeout: float = 10.0,
    ) -> SentMessage:
        message = await self.tg.wait_for_message(
            self.chat_id, predicate, thread_id=self.thread_id, since=since, timeout=timeout
        )
        if message.force_reply or message.buttons:
            self.last_prompt = message
        return message

    async def command(
        self, name: str, args: str = "", *, reply_to: JSON | SentMessage | None = None, **kw: Any
    ) -> SentMessage:
        since = self._since()
        self.last_sent = self.tg.send_command(
            self.chat, self.user, name, args, reply_to=reply_to, thread_id=self.thread_id
        )
        return await self.next_from_bot(since, **kw)

    async def text(self, text: str, **kw: Any) -> SentMessage:
        since = self._since()
        self.last_sent = self.tg.send_text(
            self.chat, self.user, text, reply_to=self._reply_target(None), thread_id=self.thread_id
        )
        return await self.next_from_bot(since, **kw)

    async def photo(
        self, data: bytes | None = None, *, reply_to: JSON | SentMessage | None = None, **kw: Any
    ) -> SentMessage:
        since = self._since()
        self.last_sent = self.tg.send_photo(
            self.chat,
            self.user,
            data if data is not None else jpeg(),
            reply_to=self._reply_target(reply_to),
            thread_id=self.thread_id,
        )
        return await self.next_from_bot(since, **kw)

    async def document(self, data: bytes, name: str, mime: str, **kw: Any) -> SentMessage:
        file_size = kw.pop("file_size", None)
        since = self._since()
        self.last_sent = self.tg.send_document(
            self.chat,
            self.user,
            data,
            name,
            mime,
            reply_to=self._reply_target(None),
            thread_id=self.thread_id,
            file_size=file_size,
        )
        return await self.next_from_bot(since, **kw)

    async def press(self, message: SentMessage, label: str, **kw: Any) -> SentMessage:
        since = self._since()
        self.tg.press_button(self.chat, self.user, message, message.button_data(label))
        return await self.next_from_bot(since, **kw)

    async def result(self, since: int, timeout: float = 15.0) -> SentMessage:
        """The try-on result: a photo (or, when large, a document) with buttons."""
        return await self.next_from_bot(
            since, lambda m: m.kind in ("photo", "document") and bool(m.buttons), timeout
        )

    async def try_on(
        self, *, top: bytes | None = None, bottom: bytes | None = None, person: bytes | None = None
    ) -> int:
        """Runs the three steps; returns the index in tg.sent from which the outcome follows."""
        await self.command("tryon")
        await self.photo(person or jpeg(seed=11))
        if top is not None:
            await self.photo(top)
        else:
            await self.command("skip")
        since = self._since()
        if bottom is not None:
            await self.photo(bottom)
        else:
            await self.command("skip")
        return since
