"""Albums, batches, compare and /history, end to end (issue 12): the real Application
over HTTP against both test doubles, albums delivered as Telegram does (one update per
item, same media_group_id, consecutive message ids, a few ms apart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from telegram.ext import Application

from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import AlbumItem, FakeTelegram, SentMessage
from tests.harness import jpeg, make_settings, running_bot

JSON = dict[str, Any]
GROUP_ID = -100_222


def results_of(tg: FakeTelegram, chat_id: int, since: int) -> list[SentMessage]:
    return [m for m in tg.sent[since:] if m.chat_id == chat_id and m.kind in ("photo", "document")]


async def test_album_person_and_top_then_skip(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5001)
    await ann.command("tryon")
    since = len(tg.sent)
    await tg.send_album_items(ann.chat, ann.user, [jpeg(seed=1), jpeg(seed=2)])
    prompt = await ann.next_from_bot(since, lambda m: "Step 3" in m.body)
    # One reply for the whole album: what went where, with a fix button, then step 3.
    assert len(tg.messages_to(ann.chat_id)[-1:]) == 1
    assert "Photo 1 → person" in prompt.body and "Photo 2 → top" in prompt.body
    assert any("Swap person and top" in label for label, _ in prompt.buttons)
    assert len(tg.sent) == since + 1
    since = len(tg.sent)
    await ann.command("skip")
    await ann.result(since)
    inputs = ds.submits[0]["body"]["input"]
    assert set(inputs) == {"person_image_url", "top_garment_url"}
    assert ds.upload_count == 2


async def test_album_person_top_bottom_goes_straight_to_a_result(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5002)
    await ann.command("tryon")
    since = len(tg.sent)
    await tg.send_album_items(ann.chat, ann.user, [jpeg(seed=3), jpeg(seed=4), jpeg(seed=5)])
    confirm = await ann.next_from_bot(since, lambda m: "Try it on" in str(m.buttons))
    assert "Photo 3 → bottom" in confirm.body
    assert ds.submits == []  # roles were guessed from the order: nothing paid yet
    since = len(tg.sent)
    await ann.press(confirm, "Try it on", predicate=lambda m: "⏱" in m.body)
    await ann.result(since)
    inputs = ds.submits[0]["body"]["input"]
    assert set(inputs) == {"person_image_url", "top_garment_url", "bottom_garment_url"}


async def test_captions_override_the_order_and_submit_at_once(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5003)
    await ann.command("tryon")
    person, top, bottom = jpeg(seed=6), jpeg(seed=7), jpeg(seed=8)
    since = len(tg.sent)
    await tg.send_album_items(
        ann.chat,
        ann.user,
        [
            AlbumItem(bottom, caption="Bottom"),
            AlbumItem(person, caption="me"),
            AlbumItem(top, caption="TOP"),
        ],
    )
    summary = await ann.next_from_bot(since, lambda m: "Got your album" in m.body)
    assert "Photo 2 → person" in summary.body and "Photo 1 → bottom" in summary.body
    await ann.result(since)
    assert len(ds.submits) == 1
    inputs = ds.submits[0]["body"]["input"]
    uploads = {url: data for url, data in ds.uploads.items()}
    assert len(uploads) == 3
    assert set(inputs) == {"person_image_url", "top_garment_url", "bottom_garment_url"}


async def test_chinese_captions_and_texts(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    li = Actor(tg, 5004, lang="zh-hans", name="Li")
    await li.command("tryon")
    since = len(tg.sent)
    await tg.send_album_items(
        li.chat,
        li.user,
        [AlbumItem(jpeg(seed=9), caption="连衣裙"), AlbumItem(jpeg(seed=10), caption="我")],
    )
    summary = await li.next_from_bot(since, lambda m: "收到你的相册" in m.body)
    assert "第 2 张 → 人物" in summary.body and "第 1 张 → 连衣裙" in summary.body
    await li.result(since)
    assert set(ds.submits[0]["body"]["input"]) == {"person_image_url", "top_garment_url"}
