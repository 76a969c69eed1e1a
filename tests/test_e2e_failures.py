"""Bad input and every failure class, end to end: clear replies, nothing leaks, flows hold."""

from __future__ import annotations

import logging

import pytest
from telegram.ext import Application

from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import jpeg

LEAKS = ("{", "Traceback", "Error:", "request_id", "sk-test", "InvalidPerson", "Exception")


def assert_human(message: SentMessage) -> None:
    for leak in LEAKS:
        assert leak not in message.body, (leak, message.body)


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        ("text", "photo of the person"),
        ("sticker", "photo of the person"),
        ("video", "photo of the person"),
        ("voice", "photo of the person"),
        ("location", "photo of the person"),
        ("pdf", "photo of the person"),
        ("corrupt", "damaged"),
        ("not_an_image", "can't read"),
        ("tiny", "100×100"),
        ("huge_file", "over 20 MB"),
    ],
)
async def test_bad_input_is_explained_and_changes_nothing(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    send: str,
    expected: str,
) -> None:
    ann = Actor(tg, 2001)
    await ann.command("tryon")
    since = len(tg.sent)
    chat, user = ann.chat, ann.user
    if send == "text":
        tg.send_text(chat, user, "hello?")
    elif send == "sticker":
        tg.send_sticker(chat, user)
    elif send == "video":
        tg.send_video(chat, user)
    elif send == "voice":
        tg.send_voice(chat, user)
    elif send == "location":
        tg.send_location(chat, user)
    elif send == "pdf":
        tg.send_document(chat, user, b"%PDF-1.4 fake", "cv.pdf", "application/pdf")
    elif send == "corrupt":
        tg.send_document(chat, user, jpeg()[:3000], "broken.jpg", "image/jpeg")
    elif send == "not_an_image":
        tg.send_document(chat, user, b"just text, really" * 50, "fake.png", "image/png")
    elif send == "tiny":
        tg.send_photo(chat, user, jpeg(100, 100))
    elif send == "huge_file":
        tg.send_document(chat, user, jpeg(), "huge.jpg", "image/jpeg", file_size=25 * 1024 * 1024)
    reply = await ann.next_from_bot(since)
    assert expected in reply.body
    assert_human(reply)
    assert ds.upload_count == 0
    if send == "huge_file":
        assert tg.calls_of("getFile") == []  # refused from its size, before downloading
    step2 = await ann.photo()  # the flow is still at step 1
    assert "Step 2" in step2.body


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("InvalidPerson", "exactly one whole person"),
        ("InvalidGarment", "garment photo wasn't usable"),
        ("InvalidInputLength", "size the service doesn't accept"),
        ("InvalidURL", "couldn't read one of the photos"),
        ("DataInspectionFailed", "because of their content"),
        ("InternalError.Algo", "had a problem"),
    ],
)
async def test_failed_tasks_get_a_message_a_person_can_act_on(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    code: str,
    expected: str,
) -> None:
    ds.script_next_task("FAILED", code)
    if code == "InvalidURL":  # an input it cannot fetch is uploaded again, once
        ds.script_next_task("FAILED", code)
    ann = Actor(tg, 2002)
    since = await ann.try_on(top=jpeg(seed=3))
    notice = await ann.next_from_bot(since, lambda m: expected in m.body)
    assert_human(notice)
    assert notice.buttons  # a next step: try again / another photo / start over
    assert not any(m.kind == "photo" for m in tg.sent[since:])


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "InvalidApiKey"), (403, "AccessDenied"), (400, "Arrearage")],
)
async def test_account_problems_tell_the_user_and_log_an_error(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    caplog: pytest.LogCaptureFixture,
    status: int,
    code: str,
) -> None:
    ds.fail_next("submit", status, code)
    ann = Actor(tg, 2003)
    with caplog.at_level(logging.ERROR):
        since = await ann.try_on(top=jpeg(seed=4))
        notice = await ann.next_from_bot(since, lambda m: "unavailable" in m.body)
    assert_human(notice)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(code in r.getMessage() for r in errors)
    assert len(ds.submits) == 1  # not retried


@pytest.mark.parametrize(
    ("status", "code"), [(429, "Throttling"), (503, "ModelUnavailable"), (503, None)]
)
async def test_throttled_and_failing_submits_are_retried(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    status: int,
    code: str | None,
) -> None:
    ds.fail_next("submit", status, code, count=2)
    ann = Actor(tg, 2004)
    since = await ann.try_on(top=jpeg(seed=5))
    await ann.result(since)
    created = [s for s in ds.submits if s.get("task_id")]
    assert len(created) == 1  # one task, whatever the retries


async def test_uploads_and_queries_survive_transient_faults(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.fail_next("policy", 503, count=1)
    ds.fail_next("upload", 500, count=1)
    ds.fail_next("query", 429, "Throttling", count=2)
    ds.fail_next("result", 502, count=1)
    ann = Actor(tg, 2005)
    since = await ann.try_on(top=jpeg(seed=6))
    await ann.result(since)
    assert len(ds.submits) == 1
