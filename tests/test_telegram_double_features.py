"""Contract tests of the Bot API double's newer parts, driven by python-telegram-bot: albums,
sendMediaGroup, sendPoll, blocked users, closed and deleted topics, ambiguous sends, webhooks,
getMe flags, a revoked token, an unreachable server and the per-method counters."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from PIL import Image
from telegram import Bot, InputMediaDocument, InputMediaPhoto, Update
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.request import HTTPXRequest

from tests.doubles.server import LocalServer
from tests.doubles.telegram import (
    BLOCKED,
    SECRET_TOKEN_HEADER,
    AlbumItem,
    FakeTelegram,
)

pytestmark = pytest.mark.timeout(30)


def jpeg(width: int = 400, height: int = 300, shade: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 140, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """RetryAfter.retry_after as a timedelta, without PTB's deprecation warning."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


def make_bot(tg: FakeTelegram, read_timeout: float = 5.0) -> Bot:
    return Bot(
        tg.token,
        base_url=f"{tg.base_url}/bot",
        base_file_url=f"{tg.base_url}/file/bot",
        request=HTTPXRequest(read_timeout=read_timeout, connect_timeout=2.0),
    )


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with make_bot(tg) as real_bot:
        yield real_bot


# -- albums --------------------------------------------------------------------------------


async def test_album_items_arrive_as_separate_updates(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(1, "Ann")
    chat = tg.private_chat(ann)
    first = tg.send_text(chat, ann, "hello")
    items: list[bytes | AlbumItem] = [
        AlbumItem(jpeg(shade=10), caption="front"),
        jpeg(shade=20),
        AlbumItem(jpeg(shade=30), kind="document", file_name="back.jpg", caption="back"),
    ]
    sent = await tg.send_album_items(chat, ann, items, reply_to=first, gap=0.01)

    updates = await bot.get_updates(offset=0, timeout=0)
    messages = [u.message for u in updates if u.message is not None][1:]
    assert [m.message_id for m in messages] == [m["message_id"] for m in sent]
    assert [m.message_id for m in messages] == [first["message_id"] + i for i in (1, 2, 3)]
    assert len({m.media_group_id for m in messages}) == 1 and messages[0].media_group_id
    assert [m.caption for m in messages] == ["front", None, "back"]
    assert messages[0].photo and messages[1].photo and messages[2].document
    assert messages[2].document.file_name == "back.jpg"
    assert [m.reply_to_message is not None for m in messages] == [True, False, False]
    assert [u.update_id for u in updates] == sorted({u.update_id for u in updates})
    assert len(tg.delivered) == 4


async def test_album_reply_on_every_item_and_topic(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(1, "Ann")
    group = tg.group(-100, "Forum", forum=True, bot_is_admin=True)
    topic = tg.create_topic(group, ann, "Looks")
    prompt = await bot.send_message(group["id"], "send photos", message_thread_id=topic)
    sent = tg.sent[-1]
    assert sent.message_id == prompt.message_id
    messages = await tg.send_album_items(
        group, ann, [jpeg(), jpeg(shade=50)], reply_to=sent, reply_to_all=True
    )
    assert all(m["reply_to_message"]["message_id"] == prompt.message_id for m in messages)
    assert all(m["message_thread_id"] == topic and m["is_topic_message"] for m in messages)
    with pytest.raises(ValueError, match="2 to 10"):
        await tg.send_album_items(group, ann, [jpeg()])


async def test_send_media_group(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(1, "Ann")
    chat = tg.private_chat(ann)
    media: list[InputMediaPhoto | InputMediaDocument] = [
        InputMediaPhoto(jpeg(), caption="<b>one</b>", parse_mode="HTML"),
        InputMediaPhoto(jpeg(shade=120), caption="two"),
        InputMediaDocument(b"%PDF-1.4 file", filename="size.pdf", caption="chart"),
    ]
    messages = await bot.send_media_group(chat["id"], media)
    assert len(messages) == 3
    assert len({m.media_group_id for m in messages}) == 1
    assert [m.caption for m in messages] == ["one", "two", "chart"]
    assert messages[0].photo and messages[2].document
    assert [m.message_id for m in messages] == [messages[0].message_id + i for i in range(3)]
    records = tg.sent[-3:]
    assert [(r.kind, r.caption) for r in records] == [
        ("photo", "one"), ("photo", "two"), ("document", "chart"),
    ]  # fmt: skip
    assert records[0].photo == media[0].media.input_file_content  # type: ignore[union-attr]
    assert records[2].file_name == "size.pdf"
    with pytest.raises(BadRequest, match=r"(?i)wrong number"):
        await bot.send_media_group(chat["id"], [InputMediaPhoto(jpeg())] * 11)


# -- polls ---------------------------------------------------------------------------------


async def test_send_poll(tg: FakeTelegram, bot: Bot) -> None:
    group = tg.group(-100, "Shop")
    message = await bot.send_poll(
        group["id"],
        "Which one?",
        ["Red", "Blue", "Green"],
        is_anonymous=False,
        allows_multiple_answers=True,
    )
    poll = message.poll
    assert poll is not None
    assert (poll.question, [o.text for o in poll.options]) == (
        "Which one?",
        ["Red", "Blue", "Green"],
    )
    assert (poll.is_anonymous, poll.allows_multiple_answers, poll.type) == (False, True, "regular")
    record = tg.sent[-1]
    assert record.kind == "poll" and record.poll is not None
    assert record.poll["question"] == "Which one?" and record.message_id == message.message_id

    default = await bot.send_poll(group["id"], "Again?", ["Yes", "No"])
    assert default.poll is not None and default.poll.is_anonymous is True
    with pytest.raises(BadRequest, match=r"(?i)at least 2"):
        await bot.send_poll(group["id"], "Alone?", ["Yes"])
    with pytest.raises(BadRequest, match=r"(?i)non-empty"):
        await bot.send_poll(group["id"], " ", ["Yes", "No"])


# -- users who blocked the bot, topics -----------------------------------------------------


async def test_blocked_user_is_counted_per_chat(tg: FakeTelegram, bot: Bot) -> None:
    ann, bob = tg.user(1, "Ann"), tg.user(2, "Bob")
    tg.private_chat(bob)
    tg.block_bot(ann)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await bot.send_message(ann["id"], "hi")
    assert tg.calls[-1].description == BLOCKED and tg.calls[-1].status == 403
    with pytest.raises(Forbidden):
        await bot.send_chat_action(ann["id"], "typing")
    await bot.send_message(bob["id"], "hi")
    assert tg.forbidden_count(ann["id"]) == 2 and tg.calls_after_forbidden(ann["id"]) == 1
    assert tg.forbidden_count(bob["id"]) == 0 and tg.calls_after_forbidden(bob["id"]) == 0
    assert [c.method for c in tg.calls_to(ann["id"])] == ["sendMessage", "sendChatAction"]

    tg.block_bot(ann, blocked=False)
    await bot.send_message(ann["id"], "welcome back")


async def test_closed_and_deleted_topics(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(1, "Ann")
    forum = tg.group(-100, "Forum", forum=True)
    topic = tg.create_topic(forum, ann, "Looks")
    status = await bot.send_message(forum["id"], "working", message_thread_id=topic)

    tg.close_topic(forum, topic, by=ann)
    assert "forum_topic_closed" in tg.delivered[-1]["message"]
    for send in (
        bot.send_message(forum["id"], "result", message_thread_id=topic),
        bot.send_chat_action(forum["id"], "typing", message_thread_id=topic),
    ):
        with pytest.raises(BadRequest) as caught:
            await send
        assert "topic_closed" in caught.value.message.lower()
    assert tg.calls[-1].description == "Bad Request: TOPIC_CLOSED"
    await bot.edit_message_text("still editable", forum["id"], status.message_id)

    tg.close_topic(forum, topic, closed=False)
    await bot.send_message(forum["id"], "reopened", message_thread_id=topic)

    tg.delete_topic(forum, topic)
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(forum["id"], "result", message_thread_id=topic)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("gone", forum["id"], status.message_id)
    assert tg.sent[-2].deleted


# -- ambiguous sends -----------------------------------------------------------------------


async def test_ambiguous_send_posts_the_message_but_loses_the_answer(tg: FakeTelegram) -> None:
    ann = tg.user(1, "Ann")
    tg.private_chat(ann)
    async with make_bot(tg, read_timeout=0.5) as bot:
        tg.ambiguous_next("sendMessage")
        with pytest.raises(NetworkError):
            await bot.send_message(ann["id"], "dropped")
        assert tg.sent[-1].text == "dropped"

        tg.ambiguous_next("sendPhoto", delay=2.0)
        with pytest.raises(TimedOut):
            await bot.send_photo(ann["id"], jpeg(), caption="late")
        assert tg.sent[-1].caption == "late"
        assert tg.calls_of("sendPhoto")[-1].status is None  # still being served
        await tg.wait_for_call("sendPhoto", lambda c: c.status == 200, timeout=5)

        await bot.send_message(ann["id"], "normal again")
    assert [m.body for m in tg.messages_to(ann["id"])] == ["dropped", "late", "normal again"]


# -- webhooks ------------------------------------------------------------------------------


class Receiver(LocalServer):
    """The bot's webhook endpoint, as a test stand-in."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[dict[str, object], str | None]] = []
        self.status = 200

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.received.append((body, request.headers.get(SECRET_TOKEN_HEADER)))
        return web.Response(status=self.status)


async def test_webhook_mode(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(1, "Ann")
    chat = tg.private_chat(ann)
    tg.send_text(chat, ann, "sent while polling")
    async with Receiver() as receiver:
        url = receiver.origin + "/hook"
        assert await bot.set_webhook(
            url,
            secret_token="s3cret_token-1",
            allowed_updates=["message", "callback_query"],
            max_connections=5,
        )
        config = tg.webhook
        assert (config.url, config.secret_token, config.max_connections) == (
            url, "s3cret_token-1", 5,
        )  # fmt: skip
        assert config.allowed_updates == ["message", "callback_query"]
        await tg.wait_for(lambda: len(receiver.received) == 1)
        update = Update.de_json(receiver.received[0][0], bot)
        assert update.message is not None and update.message.text == "sent while polling"
        assert receiver.received[0][1] == "s3cret_token-1"

        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)

        tg.send_text(chat, ann, "second")
        await tg.wait_for(lambda: len(receiver.received) == 2)
        await tg.wait_consumed()
        info = await bot.get_webhook_info()
        assert (info.url, info.pending_update_count, info.max_connections) == (url, 0, 5)
        assert info.last_error_message is None

        receiver.status = 500
        tg.send_text(chat, ann, "refused")
        await tg.wait_for(lambda: tg.webhook_last_error is not None)
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 1
        assert (
            info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        )
        assert info.last_error_date is not None
        receiver.status = 200
        await tg.wait_consumed()  # retried until the bot accepted it
        assert [body["message"]["text"] for body, _ in receiver.received[-2:]] == ["refused"] * 2  # type: ignore[index]

        forged = {"update_id": 1, "message": tg.delivered[-1]["message"]}
        assert await tg.post_webhook(forged, secret_token="wrong") == 200
        assert receiver.received[-1][1] == "wrong"

        await receiver.go_offline()
        tg.send_text(chat, ann, "pending at delete")
        await tg.wait_for(
            lambda: (
                tg.webhook_last_error is not None
                and tg.webhook_last_error[1] == "Connection refused"
            )
        )
        info = await bot.get_webhook_info()
        assert (info.last_error_message, info.pending_update_count) == ("Connection refused", 1)
        assert await bot.delete_webhook(drop_pending_updates=True)
    assert tg.webhook.url == "" and tg.webhook.drop_pending_updates is True
    assert [c.url for c in tg.webhook_history] == [url, ""]
    assert tg.pending_updates == 0 and tg.undelivered[-1]["message"]["text"] == "pending at delete"
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count) == ("", 0)
    assert await bot.get_updates(timeout=0) == ()


async def test_set_webhook_checks(tg: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
        await bot.set_webhook("http://example.com/hook")
    with pytest.raises(BadRequest, match=r"(?i)unallowed characters"):
        await bot.set_webhook("https://example.com/hook", secret_token="no spaces")
    assert await bot.set_webhook("https://example.com/hook")
    assert (await bot.get_webhook_info()).url == "https://example.com/hook"
    assert await bot.set_webhook("")  # an empty URL removes it
    assert tg.webhook.url == ""


# -- getMe, token, reachability, counters --------------------------------------------------


async def test_get_me_flags() -> None:
    async with (
        FakeTelegram(can_join_groups=False, supports_inline_queries=True, privacy_mode=False) as tg,
        make_bot(tg) as bot,
    ):
        me = await bot.get_me()
        assert (me.can_join_groups, me.supports_inline_queries) == (False, True)
        assert me.can_read_all_group_messages is True
        tg.can_read_all_group_messages = False
        assert (await bot.get_me()).can_read_all_group_messages is False


async def test_revoked_token_and_unreachable_server(tg: FakeTelegram) -> None:
    tg.revoke_token()
    with pytest.raises(InvalidToken):  # Bot.initialize() calls getMe
        async with make_bot(tg):
            pass
    assert tg.calls == []  # rejected before being served, as the real API does
    tg.revoke_token(False)
    async with make_bot(tg) as bot:
        tg.revoke_token()
        with pytest.raises(InvalidToken):
            await bot.send_message(1, "hi")
        tg.revoke_token(False)
        await bot.get_me()

        await tg.go_offline()
        with pytest.raises(NetworkError):
            await bot.get_me()
        with pytest.raises(NetworkError):  # refused, also on a new connection
            async with make_bot(tg):
                pass
        await tg.go_online()
        await bot.get_me()


async def test_per_method_counters(tg: FakeTelegram, bot: Bot) -> None:
    ann = tg.user(1, "Ann")
    tg.private_chat(ann)
    tg.flood("sendMessage", retry_after=1)
    with pytest.raises(RetryAfter):
        await bot.send_message(ann["id"], "one")
    await bot.send_message(ann["id"], "two")
    await bot.send_chat_action(ann["id"], "typing")
    member = await bot.get_chat_member(ann["id"], ann["id"])
    assert member.status == "member"
    assert tg.call_counts()["sendmessage"] == 2 and tg.call_counts()["sendchataction"] == 1
    assert tg.flood_counts() == {"sendmessage": 1}
