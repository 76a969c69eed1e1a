"""Private chat, end to end: the real Application over HTTP against both test doubles."""

from __future__ import annotations

from telegram.ext import Application

from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import jpeg


async def test_top_only_try_on(tg: FakeTelegram, ds: FakeDashScope, bot: Application) -> None:  # type: ignore[type-arg]
    ann = Actor(tg, 1001)
    prompt = await ann.command("tryon")
    assert "Step 1" in prompt.body
    prompt = await ann.photo(jpeg(seed=1))
    assert "Step 2" in prompt.body
    prompt = await ann.photo(jpeg(seed=2))
    assert "Step 3" in prompt.body
    top_message = ann.last_sent
    since = len(tg.sent)
    await ann.command("skip")
    result = await ann.result(since)
    assert result.kind == "photo" and result.photo
    assert result.reply_to_message_id == top_message["message_id"] if top_message else False
    labels = [label for label, _ in result.buttons]
    assert any("Full size" in label for label in labels)
    assert any("Another garment" in label for label in labels)
    assert len(ds.submits) == 1
    submit = ds.submits[0]
    assert submit["body"]["input"]["person_image_url"].startswith("oss://")
    assert submit["body"]["input"]["top_garment_url"].startswith("oss://")
    assert "bottom_garment_url" not in submit["body"]["input"]
    assert submit["headers"]["X-DashScope-Async"] == "enable"
    assert submit["headers"]["X-DashScope-OssResourceResolve"] == "enable"


async def test_bottom_only_and_both_garments(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 1002)
    since = await ann.try_on(bottom=jpeg(seed=3))
    await ann.result(since)
    inputs = ds.submits[-1]["body"]["input"]
    assert "top_garment_url" not in inputs and inputs["bottom_garment_url"].startswith("oss://")
    since = await ann.try_on(top=jpeg(seed=4), bottom=jpeg(seed=5))
    await ann.result(since)
    inputs = ds.submits[-1]["body"]["input"]
    assert set(inputs) == {"person_image_url", "top_garment_url", "bottom_garment_url"}
    assert len(ds.submits) == 2


async def test_status_message_walks_the_stages_then_makes_way_for_the_result(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.hold_tasks()
    ann = Actor(tg, 1003)
    since = await ann.try_on(top=jpeg(seed=6))
    status = await ann.next_from_bot(since, lambda m: "Checking" in m.body)
    await tg.wait_for(lambda: any("Generating" in e for e in status.edits))
    await tg.wait_for(lambda: tg.chat_actions and tg.chat_actions[-1].chat_id == ann.chat_id)
    task_id = ds.submits[-1]["task_id"]
    ds.complete(task_id)
    await ann.result(since)
    await tg.wait_for(lambda: status.deleted)
    assert any("⏱" in edit for edit in status.edits)  # elapsed time is shown


async def test_skipping_both_garments_is_refused_and_the_flow_stays(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 1004)
    await ann.command("tryon")
    await ann.photo()
    await ann.command("skip")
    refusal = await ann.command("skip")
    assert "skipped the top" in refusal.body
    since = len(tg.sent)
    await ann.photo(jpeg(seed=9))  # still at step 3: this photo is the bottom
    await ann.result(since)
    assert "bottom_garment_url" in ds.submits[0]["body"]["input"]


async def test_buttons_are_twins_of_the_commands(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 1005)
    await ann.command("tryon")
    step2 = await ann.photo()
    step3 = await ann.press(step2, "AI picks")
    assert "Step 3" in step3.body
    canceled = await ann.press(step3, "Cancel")
    assert "canceled" in canceled.body.lower()
    again = await ann.photo()  # the flow is over: a photo now changes nothing
    assert "/tryon" in again.body
    assert ds.submits == []


async def test_cancel_command_ends_the_flow(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 1006)
    await ann.command("tryon")
    await ann.photo()
    reply = await ann.command("cancel")
    assert "canceled" in reply.body.lower()
    assert ds.submits == [] and ds.upload_count == 1


async def test_image_documents_and_heic_are_accepted(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    from tests.harness import image_bytes

    ann = Actor(tg, 1007)
    await ann.command("tryon")
    step2 = await ann.document(image_bytes("HEIF"), "IMG_0001.HEIC", "image/heic")
    assert "Step 2" in step2.body
    step3 = await ann.document(image_bytes("PNG"), "shirt.png", "image/png")
    assert "Step 3" in step3.body
    since = len(tg.sent)
    await ann.document(image_bytes("WEBP"), "skirt.webp", "image/webp")
    await ann.result(since)
    uploads = list(ds.uploads.values())
    assert len(uploads) == 3 and all(data[:3] == b"\xff\xd8\xff" for data in uploads)


async def test_another_garment_reuses_the_person(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 1008)
    since = await ann.try_on(top=jpeg(seed=21))
    result = await ann.result(since)
    step2 = await ann.press(result, "Another garment")
    assert "Step 2" in step2.body
    await ann.photo(jpeg(seed=22))
    since = len(tg.sent)
    await ann.command("skip")
    await ann.result(since)
    first, second = (s["body"]["input"] for s in ds.submits)
    assert first["person_image_url"] == second["person_image_url"]  # not uploaded again
    assert first["top_garment_url"] != second["top_garment_url"]


async def test_full_size_button_sends_the_file(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 1009)
    since = await ann.try_on(top=jpeg(seed=23))
    result = await ann.result(since)
    document = await ann.press(result, "Full size", predicate=lambda m: m.kind == "document")
    assert document.document is not None and document.document[:3] == b"\xff\xd8\xff"
    assert document.reply_to_message_id == result.message_id


async def test_chinese_users_get_chinese(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    li = Actor(tg, 1010, lang="zh-hans", name="Li")
    prompt = await li.command("tryon")
    assert "第 1 步" in prompt.body
    await li.photo()
    await li.photo()
    since = len(tg.sent)
    await li.command("skip")
    result = await li.result(since)
    assert "试衣" in (result.caption or "")
    assert any("原图" in label for label, _ in result.buttons)


async def test_one_users_wait_never_blocks_another(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.hold_tasks()
    ann, bob = Actor(tg, 1011), Actor(tg, 1012, name="Bob")
    await ann.try_on(top=jpeg(seed=31))
    await ds.wait_for(lambda: len(ds.submits) == 1)
    # Ann's task is held at DashScope; Bob goes through his whole flow meanwhile.
    since = await bob.try_on(top=jpeg(seed=32))
    await ds.wait_for(lambda: len(ds.submits) == 2)
    ds.complete(ds.submits[1]["task_id"])
    await bob.result(since)
    ds.complete(ds.submits[0]["task_id"])
    await tg.wait_for(lambda: any(m.kind == "photo" for m in tg.messages_to(ann.chat_id)))


async def test_quick_follow_ups_are_handled_in_order(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    """Person, top and /skip sent at once (an album, a fast user): each fills its step."""
    ann = Actor(tg, 1013)
    await ann.command("tryon")
    since = len(tg.sent)
    tg.send_album(ann.chat, ann.user, [jpeg(seed=41), jpeg(seed=42)])
    tg.send_command(ann.chat, ann.user, "skip")
    await ann.result(since)
    inputs = ds.submits[0]["body"]["input"]
    assert set(inputs) == {"person_image_url", "top_garment_url"}
    assert not any("still checking" in m.body for m in tg.sent[since:])
