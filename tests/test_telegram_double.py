"""Contract tests of the fake Bot API server, driven by the real python-telegram-bot stack."""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from PIL import Image
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    ReplyParameters,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.doubles.telegram import ANONYMOUS_ADMIN_ID, MAX_DOWNLOAD_SIZE, FakeTelegram

pytestmark = pytest.mark.timeout(30)

Context = ContextTypes.DEFAULT_TYPE


def jpeg(width: int = 1000, height: int = 800) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """RetryAfter.retry_after as a timedelta, without PTB's deprecation warning."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(
        tg.token, base_url=f"{tg.base_url}/bot", base_file_url=f"{tg.base_url}/file/bot"
    ) as real_bot:
        yield real_bot


@asynccontextmanager
async def polling_app(
    tg: FakeTelegram, *handlers: BaseHandler[Any, Context, Any]
) -> AsyncIterator[None]:
    """A real Application polling the fake, like run_polling without the signal handling."""
    app = (
        ApplicationBuilder()
        .token(tg.token)
        .base_url(f"{tg.base_url}/bot")
        .base_file_url(f"{tg.base_url}/file/bot")
        .build()
    )
    app.add_handlers(handlers)
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=dtm.timedelta(seconds=5))
        await app.start()
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()


# -- basics -------------------------------------------------------------------------------------


async def test_get_me_and_token_checks(tg: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (tg.bot_id, "TryOnTestBot", True)
    assert me.can_read_all_group_messages is False

    wrong = Bot("123456789:wrong", base_url=f"{tg.base_url}/bot")
    with pytest.raises(InvalidToken):
        await wrong.get_me()
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy")
    assert [c.method for c in tg.calls[-2:]] == ["getMe", "sendTelepathy"]


async def test_get_updates_offsets_and_long_polling(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1, "Alice")
    chat = tg.private_chat(alice)
    first = tg.send_text(chat, alice, "hello")
    tg.send_command(chat, alice, "start")

    updates = await bot.get_updates()
    assert [u.message.text for u in updates if u.message] == ["hello", "/start"]
    assert updates[0].message is not None
    assert updates[0].message.message_id == first["message_id"]
    assert updates[1].update_id == updates[0].update_id + 1
    assert tg.pending_updates == 2  # nothing confirmed yet

    assert await bot.get_updates(offset=updates[0].update_id + 1) == (updates[1],)
    assert await bot.get_updates(offset=updates[1].update_id + 1) == ()
    assert tg.pending_updates == 0

    # A held long poll returns as soon as an update arrives.
    poll = asyncio.create_task(bot.get_updates(offset=updates[1].update_id + 1, timeout=20))
    await tg.wait_for(lambda: len(tg.calls_of("getUpdates")) == 4)
    tg.send_text(chat, alice, "late")
    late = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in late if u.message] == ["late"]


async def test_a_new_poll_terminates_the_held_one(tg: FakeTelegram, bot: Bot) -> None:
    held = asyncio.create_task(bot.get_updates(timeout=20))
    await tg.wait_for(lambda: tg.calls_of("getUpdates"))
    async with Bot(tg.token, base_url=f"{tg.base_url}/bot") as second_instance:
        assert await second_instance.get_updates() == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await asyncio.wait_for(held, 2)


async def test_allowed_updates_filters_types(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    tg.send_text(chat, alice, "ignored")
    assert await bot.get_updates(allowed_updates=["callback_query"]) == ()
    assert tg.undelivered[0]["message"]["text"] == "ignored"
    assert tg.pending_updates == 0


# -- files --------------------------------------------------------------------------------------


async def test_send_photo_upload_then_get_file_and_download(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    picture = jpeg(1000, 800)

    message = await bot.send_photo(chat["id"], picture, caption="result", filename="tryon.jpg")
    assert message.caption == "result"
    assert [p.width for p in message.photo] == [90, 320, 800, 1000]
    sent = tg.last_to(chat["id"])
    assert (sent.kind, sent.photo, sent.file_name) == ("photo", picture, "tryon.jpg")

    file = await bot.get_file(message.photo[-1].file_id)
    assert file.file_path is not None and "photos/" in file.file_path
    assert bytes(await file.download_as_bytearray()) == picture
    assert tg.downloads == [tg.file(message.photo[-1].file_id).file_path]

    # Re-sending by file_id does not upload again and keeps the same sizes.
    again = await bot.send_photo(chat["id"], message.photo[-1].file_id)
    assert again.photo[-1].file_id == message.photo[-1].file_id
    assert tg.last_to(chat["id"]).photo == picture


async def test_user_photo_sizes_and_download(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    picture = jpeg(2000, 1500)
    posted = tg.send_photo(chat, alice, picture, caption="me")
    sizes = posted["photo"]
    assert 2 <= len(sizes) <= 4
    assert sizes[-1]["width"] == 2000 and sizes[0]["width"] < sizes[-1]["width"]

    (update,) = await bot.get_updates()
    assert update.message is not None and update.message.caption == "me"
    file = await update.message.photo[-1].get_file()
    assert bytes(await file.download_as_bytearray()) == picture
    thumb = await (await update.message.photo[0].get_file()).download_as_bytearray()
    with Image.open(io.BytesIO(bytes(thumb))) as image:
        assert max(image.size) == sizes[0]["width"] == 90


async def test_file_too_big(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    posted = tg.send_document(
        chat, alice, jpeg(64, 64), "huge.jpg", "image/jpeg", file_size=25 * 1024 * 1024
    )
    assert posted["document"]["file_size"] > MAX_DOWNLOAD_SIZE
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(posted["document"]["file_id"])
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(tg.add_large_file().file_id)


async def test_send_document_records_bytes_and_name(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    message = await bot.send_document(chat["id"], b"%PDF-1.4", filename="report.pdf")
    assert message.document is not None and message.document.file_name == "report.pdf"
    sent = tg.last_to(chat["id"])
    assert (sent.kind, sent.document, sent.mime_type) == (
        "document",
        b"%PDF-1.4",
        "application/pdf",
    )


async def test_media_group_chat_action_and_caption_edit(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat_id = tg.private_chat(alice)["id"]
    album = await bot.send_media_group(
        chat_id,
        [InputMediaPhoto(jpeg(400, 300), caption="front"), InputMediaPhoto(jpeg(3000, 2000))],
    )
    assert album[0].media_group_id == album[1].media_group_id is not None
    assert album[1].photo[-1].width == 1280  # Telegram recompresses photos to 1280 px
    await bot.send_chat_action(chat_id, "upload_photo")
    assert [(a.chat_id, a.action) for a in tg.chat_actions] == [(chat_id, "upload_photo")]

    await bot.edit_message_caption(chat_id, album[0].message_id, caption="back")
    assert tg.messages_to(chat_id)[0].edits == ["back"]
    with pytest.raises(BadRequest, match="no text in the message"):
        await bot.edit_message_text("text", chat_id, album[0].message_id)


async def test_user_media_kinds_parse_in_ptb(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    tg.send_sticker(chat, alice)
    tg.send_sticker(chat, alice, is_animated=True)
    tg.send_voice(chat, alice)
    tg.send_video(chat, alice, caption="clip")
    tg.send_location(chat, alice)
    tg.send_document(chat, alice, b"\x00\x00\x00\x18ftypheic", "IMG_1.HEIC", "image/heic")
    tg.send_album(chat, alice, [jpeg(100, 100), jpeg(120, 100)], caption="outfits")
    messages = [u.message for u in await bot.get_updates() if u.message]
    assert messages[0].sticker is not None and not messages[0].sticker.is_animated
    assert messages[1].sticker is not None and messages[1].sticker.is_animated
    assert messages[2].voice and messages[3].video and messages[4].location
    assert messages[5].document is not None and messages[5].document.mime_type == "image/heic"
    assert messages[6].media_group_id == messages[7].media_group_id is not None
    assert (messages[6].caption, messages[7].caption) == ("outfits", None)


# -- groups, privacy and topics ----------------------------------------------------------------


async def test_privacy_mode_delivery_rules(tg: FakeTelegram) -> None:
    group = tg.group(-100, "Friends")
    alice = tg.user(1, "Alice")
    seen: list[str] = []

    async def tryon(update: Update, context: Context) -> None:
        assert update.effective_message is not None
        seen.append("command")
        await update.effective_message.reply_text(
            "Send your photo", reply_markup=ForceReply(selective=True)
        )

    async def photo(update: Update, context: Context) -> None:
        seen.append("photo")

    async with polling_app(
        tg, CommandHandler("tryon", tryon), MessageHandler(filters.PHOTO, photo)
    ):
        tg.send_command(group, alice, "tryon", mention=True)
        prompt = await tg.wait_for_message(group["id"], lambda m: "photo" in m.body)
        assert prompt.force_reply and prompt.selective
        assert prompt.reply_to_message_id is not None  # reply_text quotes in groups

        tg.send_command(group, alice, "tryon", mention="OtherBot")
        tg.send_photo(group, alice, jpeg(300, 300))  # plain photo: invisible
        tg.send_text(group, alice, "hi @TryOnTestBot")  # mentions are not delivered either
        tg.send_photo(group, alice, jpeg(300, 300), reply_to=prompt.message)
        await tg.wait_for(lambda: "photo" in seen)
        await tg.wait_consumed()

    assert seen == ["command", "photo"]
    undelivered = [u["message"] for u in tg.undelivered]
    assert undelivered[0]["text"] == "/tryon@OtherBot"
    assert "photo" in undelivered[1]
    assert undelivered[2]["text"] == "hi @TryOnTestBot"


async def test_admin_bot_and_private_chats_see_everything(tg: FakeTelegram, bot: Bot) -> None:
    admin_group = tg.group(-200, bot_is_admin=True)
    alice = tg.user(1)
    tg.send_photo(admin_group, alice, jpeg(200, 200))
    tg.send_text(tg.private_chat(alice), alice, "plain")
    assert len(await bot.get_updates()) == 2
    assert tg.undelivered == []


async def test_anonymous_admin_command(tg: FakeTelegram, bot: Bot) -> None:
    group = tg.group(-300, "Shop", supergroup=True)
    tg.send_as_anonymous_admin(group, "/tryon@TryOnTestBot")
    (update,) = await bot.get_updates()
    message = update.message
    assert message is not None and message.from_user is not None
    assert message.from_user.id == ANONYMOUS_ADMIN_ID
    assert message.sender_chat is not None and message.sender_chat.id == -300


async def test_forum_topics(tg: FakeTelegram, bot: Bot) -> None:
    forum = tg.group(-400, "Forum", forum=True)
    alice = tg.user(1)
    topic = tg.create_topic(forum, alice, "Try-ons")

    async def echo(update: Update, context: Context) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("in topic")

    async with polling_app(tg, CommandHandler("tryon", echo)):
        tg.send_command(forum, alice, "tryon", thread_id=topic)
        reply = await tg.wait_for_message(forum["id"], lambda m: m.body == "in topic")
    assert reply.thread_id == topic
    assert reply.message["is_topic_message"] is True
    assert tg.messages_to(forum["id"], thread_id=topic) == [reply]

    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(forum["id"], "lost", message_thread_id=9999)
    general = await bot.send_message(forum["id"], "general")
    assert general.message_thread_id is None


async def test_supergroup_migration(tg: FakeTelegram, bot: Bot) -> None:
    group = tg.group(-500, "Old")
    alice = tg.user(1)
    supergroup = tg.migrate_group_to_supergroup(group, alice)
    updates = await bot.get_updates()
    migrations = [
        (u.message.migrate_to_chat_id, u.message.migrate_from_chat_id) for u in updates if u.message
    ]
    assert migrations == [(supergroup["id"], None), (None, -500)]

    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(-500, "hello?")
    assert caught.value.new_chat_id == supergroup["id"]
    assert (await bot.send_message(supergroup["id"], "hello")).chat.type == "supergroup"


# -- messages -----------------------------------------------------------------------------------


async def test_edit_errors_and_history(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat_id = tg.private_chat(alice)["id"]
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Retry", callback_data="retry")]])
    message = await bot.send_message(chat_id, "Working…", reply_markup=keyboard)

    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("Working…", chat_id, message.message_id, reply_markup=keyboard)
    await bot.edit_message_text("Done", chat_id, message.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("Done", chat_id, 999)

    sent = tg.last_to(chat_id)
    assert (sent.text, sent.edits, sent.reply_markup) == ("Done", ["Done"], None)

    assert await bot.delete_message(chat_id, message.message_id)
    assert sent.deleted
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(chat_id, message.message_id)


async def test_reply_parameters_and_html(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat_id = tg.private_chat(alice)["id"]
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(chat_id, "x", reply_parameters=ReplyParameters(message_id=77))
    loose = await bot.send_message(
        chat_id, "x", reply_parameters=ReplyParameters(77, allow_sending_without_reply=True)
    )
    assert loose.reply_to_message is None
    legacy = await bot.send_message(chat_id, "y", reply_to_message_id=loose.message_id)
    assert legacy.reply_to_message is not None
    assert tg.last_to(chat_id).reply_to_message_id == loose.message_id

    bold = await bot.send_message(chat_id, "<b>Ready</b> &amp; set", parse_mode="HTML")
    assert bold.text == "Ready & set"
    assert [(e.type, e.offset, e.length) for e in bold.entities] == [("bold", 0, 5)]
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(chat_id, "size <M>", parse_mode="HTML")


async def test_forbidden_when_user_blocked_the_bot(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    tg.block_bot(alice)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await bot.send_message(alice["id"], "hi")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(42, "hi")


async def test_callback_queries(tg: FakeTelegram) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    pressed: list[str | None] = []

    async def menu(update: Update, context: Context) -> None:
        assert update.effective_message is not None
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Top", callback_data="cat:top")]])
        await update.effective_message.reply_text("Pick", reply_markup=keyboard)

    async def on_button(update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        pressed.append(query.data)
        await query.answer("Noted")
        await query.edit_message_text("Top it is")

    async with polling_app(tg, CommandHandler("start", menu), CallbackQueryHandler(on_button)):
        tg.send_command(chat, alice, "start")
        menu_message = await tg.wait_for_message(chat["id"], lambda m: m.body == "Pick")
        query_id = tg.press_button(chat, alice, menu_message, menu_message.button_data("Top"))
        await tg.wait_for(lambda: menu_message.edits)

    assert pressed == ["cat:top"]
    assert tg.callback_answers == [{"callback_query_id": query_id, "text": "Noted"}]
    assert menu_message.text == "Top it is" and menu_message.buttons == []
    with pytest.raises(AssertionError, match="no button"):
        tg.press_button(chat, alice, menu_message, "cat:top")


async def test_commands_per_scope_and_descriptions(tg: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand("tryon", "Try clothes on")])
    await bot.set_my_commands(
        [BotCommand("tryon", "Примерить")],
        scope=BotCommandScopeAllGroupChats(),
        language_code="ru",
    )
    await bot.set_my_description("Virtual try-on")
    assert tg.commands_for() == [{"command": "tryon", "description": "Try clothes on"}]
    assert tg.commands_for("all_group_chats", "ru")[0]["description"] == "Примерить"
    assert [c.command for c in await bot.get_my_commands()] == ["tryon"]
    assert tg.descriptions == {"": "Virtual try-on"}
    with pytest.raises(BadRequest):
        await bot.set_my_commands([BotCommand("Try-On", "bad name")])


# -- flood control and faults -------------------------------------------------------------------


async def test_flood_raises_retry_after(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat_id = tg.private_chat(alice)["id"]
    tg.flood("sendMessage", chat_id=chat_id, retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(chat_id, "hi")
    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    assert tg.calls[-1].status == 429
    await bot.send_message(chat_id, "hi")  # the rule was used up
    assert [m.body for m in tg.messages_to(chat_id)] == ["hi"]


async def test_group_limit_sliding_window(tg: FakeTelegram, bot: Bot) -> None:
    now = [1000.0]
    tg.clock = lambda: now[0]
    group = tg.group(-600)
    tg.enforce_group_limit(per_minute=2, window=60)
    await bot.send_message(group["id"], "1")
    now[0] += 30
    await bot.send_message(group["id"], "2")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(group["id"], "3")
    assert caught.value.retry_after == dtm.timedelta(seconds=30)  # until "1" leaves the window
    other = tg.group(-700)
    await bot.send_message(other["id"], "other groups have their own budget")
    now[0] += 30
    await bot.send_message(group["id"], "3")
    assert [m.body for m in tg.messages_to(group["id"])] == ["1", "2", "3"]


async def test_transient_faults(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user(1)
    chat_id = tg.private_chat(alice)["id"]
    tg.fail_next("sendMessage", status=502)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(chat_id, "a")
    tg.drop_next("sendMessage")
    with pytest.raises(NetworkError):
        await bot.send_message(chat_id, "b")
    assert tg.messages_to(chat_id) == []
    tg.drop_next("sendMessage", after_processing=True)
    with pytest.raises(NetworkError):
        await bot.send_message(chat_id, "c")
    assert [m.body for m in tg.messages_to(chat_id)] == ["c"]  # sent, but the answer was lost


async def test_updates_queued_while_down_are_consumed_after_restart(tg: FakeTelegram) -> None:
    alice = tg.user(1)
    chat = tg.private_chat(alice)
    got: list[str] = []

    async def record(update: Update, context: Context) -> None:
        assert update.effective_message is not None and update.effective_message.text
        got.append(update.effective_message.text)

    handler = MessageHandler(filters.TEXT, record)
    async with polling_app(tg, handler):
        tg.send_text(chat, alice, "one")
        await tg.wait_for(lambda: got == ["one"])
    tg.send_text(chat, alice, "two")
    tg.send_text(chat, alice, "three")
    assert tg.pending_updates == 2
    async with polling_app(tg, handler):
        await tg.wait_for(lambda: len(got) == 3)
        await tg.wait_consumed()
    assert got == ["one", "two", "three"]
