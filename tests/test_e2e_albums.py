"""Albums, batches, compare and /history, end to end (issue 12): the real Application
over HTTP against both test doubles, albums delivered as Telegram does (one update per
item, same media_group_id, consecutive message ids, a few ms apart)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image
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


# ---- batches -----------------------------------------------------------------------------


def album_sent(tg: FakeTelegram, chat_id: int, since: int) -> list[SentMessage]:
    return [m for m in tg.sent[since:] if m.chat_id == chat_id and m.media_group_id]


async def offer_three_tops(tg: FakeTelegram, ann: Actor, seed: int = 20) -> SentMessage:
    await ann.command("tryon")
    await ann.photo(jpeg(seed=seed))
    since = len(tg.sent)
    tops = [jpeg(seed=seed + n) for n in (1, 2, 3)]
    await tg.send_album_items(
        ann.chat,
        ann.user,
        tops,
        reply_to=ann.last_prompt if ann.in_group else None,
        reply_to_all=ann.in_group,
    )
    return await ann.next_from_bot(since, lambda m: "Try each one on" in str(m.buttons))


async def test_a_batch_of_three_tops_gives_one_album_of_three_results(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5101)
    offer = await offer_three_tops(tg, ann)
    assert "3 tops" in offer.body and "3 try-ons" in offer.body
    assert "20 try-ons left" in offer.body
    since = len(tg.sent)
    await ann.press(offer, "Try each one on", predicate=lambda m: "of 3 ready" in m.body)
    await tg.wait_for(lambda: len(album_sent(tg, ann.chat_id, since)) == 3, timeout=20)
    album = album_sent(tg, ann.chat_id, since)
    assert [m.caption for m in album] == ["👕 1", "👕 2", "👕 3"]
    assert len({m.media_group_id for m in album}) == 1 and all(m.kind == "photo" for m in album)
    assert len(tg.calls_of("sendMediaGroup")) == 1
    follow = await ann.next_from_bot(since, lambda m: "Compare" in str(m.buttons))
    assert "3 try-ons" in follow.body
    assert len(ds.submits) == 3
    person_urls = {s["body"]["input"]["person_image_url"] for s in ds.submits}
    top_urls = [s["body"]["input"]["top_garment_url"] for s in ds.submits]
    assert len(person_urls) == 1 and len(set(top_urls)) == 3
    # One status message for the whole batch, gone once the album is there.
    statuses = [m for m in tg.sent[since:] if "ready" in (m.raw_text or "")]
    assert len(statuses) == 1
    await tg.wait_for(lambda: statuses[0].deleted)
    assert any("of 3 ready" in e for e in [statuses[0].raw_text or "", *statuses[0].edits])


async def test_a_batch_the_quota_cannot_cover_is_refused_then_pick_one(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "d", user_daily_limit=2)
    async with running_bot(settings):
        ann = Actor(tg, 5102)
        offer = await offer_three_tops(tg, ann, seed=30)
        assert "2 try-ons left" in offer.body
        refused = await ann.press(offer, "Try each one on", predicate=lambda m: "needs 3" in m.body)
        assert "2 left" in refused.body
        assert ds.submits == []
        which = await ann.press(refused, "Pick one")
        step3 = await ann.press(which, "2", predicate=lambda m: "Step 3" in m.body)
        assert step3
        since = len(tg.sent)
        await ann.command("skip")
        await ann.result(since)
        assert len(ds.submits) == 1


async def test_a_failed_item_is_named_and_the_others_are_delivered(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5103)
    offer = await offer_three_tops(tg, ann, seed=40)
    ds.script_next_task("SUCCEEDED", None)
    ds.script_next_task("FAILED", "InvalidGarment")
    since = len(tg.sent)
    await ann.press(offer, "Try each one on", predicate=lambda m: "ready" in m.body)
    await tg.wait_for(lambda: len(album_sent(tg, ann.chat_id, since)) == 2, timeout=20)
    album = album_sent(tg, ann.chat_id, since)
    assert album[0].caption is not None and album[0].caption.startswith("👕 1")
    assert "2 didn't work" in album[0].caption and "garment" in album[0].caption
    assert album[1].caption == "👕 3"


# ---- groups (privacy mode) ---------------------------------------------------------------


async def test_group_album_with_every_item_replying_is_taken_whole(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Shopping")
    ann = Actor(tg, 5201, chat=group, name="Ann")
    step1 = await ann.command("tryon")
    since = len(tg.sent)
    await tg.send_album_items(
        group, ann.user, [jpeg(seed=50), jpeg(seed=51)], reply_to=step1, reply_to_all=True
    )
    step3 = await ann.next_from_bot(since, lambda m: "Step 3" in m.body)
    assert step3.force_reply and step3.selective
    summary = next(m for m in tg.sent[since:] if "Got your album" in m.body)
    assert any("Swap person and top" in label for label, _ in summary.buttons)
    since = len(tg.sent)
    await ann.command("skip", reply_to=step3)
    result = await ann.result(since)
    assert set(ds.submits[0]["body"]["input"]) == {"person_image_url", "top_garment_url"}
    assert any("Compare" in label for label, _ in result.buttons)  # groups: "which one?"


async def test_group_album_of_which_only_the_replying_item_arrives(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    """Privacy mode: items that do not reply to the bot never reach it. The one that did
    is taken as a single photo, with a note on how to send the rest."""
    group = tg.group(GROUP_ID, "Shopping")
    ann = Actor(tg, 5202, chat=group, name="Ann")
    step1 = await ann.command("tryon")
    hidden = len(tg.undelivered)
    since = len(tg.sent)
    await tg.send_album_items(group, ann.user, [jpeg(seed=52), jpeg(seed=53)], reply_to=step1)
    assert len(tg.undelivered) == hidden + 1
    step2 = await ann.next_from_bot(since, lambda m: "Step 2" in m.body)
    assert any("Only one photo of your album" in m.body for m in tg.sent[since:])
    assert step2.force_reply


async def test_group_album_items_without_reply_join_when_the_bot_sees_them(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    """Privacy off: the other items arrive without reply_to_message and join the album
    by its media_group_id."""
    tg.privacy_mode = False
    group = tg.group(GROUP_ID, "Shopping")
    ann = Actor(tg, 5203, chat=group, name="Ann")
    step1 = await ann.command("tryon")
    since = len(tg.sent)
    await tg.send_album_items(
        group, ann.user, [jpeg(seed=54), jpeg(seed=55), jpeg(seed=56)], reply_to=step1
    )
    confirm = await ann.next_from_bot(since, lambda m: "Try it on" in str(m.buttons))
    assert "Photo 3 → bottom" in confirm.body
    swapped = await ann.press(confirm, "Swap top and bottom", predicate=lambda m: "Fixed" in m.body)
    since = len(tg.sent)
    await ann.press(swapped, "Try it on", predicate=lambda m: "⏱" in m.body)
    await ann.result(since)
    inputs = ds.submits[0]["body"]["input"]
    assert set(inputs) == {"person_image_url", "top_garment_url", "bottom_garment_url"}


# ---- compare and history ----------------------------------------------------------------


async def run_batch(tg: FakeTelegram, ann: Actor, seed: int) -> None:
    offer = await offer_three_tops(tg, ann, seed=seed)
    since = len(tg.sent)
    await ann.press(offer, "Try each one on", predicate=lambda m: "ready" in m.body)
    await ann.next_from_bot(since, lambda m: "Compare" in str(m.buttons), timeout=20)


async def test_compare_in_a_group_posts_a_collage_and_a_poll(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Shopping")
    ann = Actor(tg, 5301, chat=group, name="Ann")
    await run_batch(tg, ann, seed=60)
    follow = tg.sent[-1]
    since = len(tg.sent)
    collage = await ann.press(follow, "Compare", predicate=lambda m: m.kind == "photo")
    assert "Which one" in collage.body and collage.photo is not None
    poll = await ann.next_from_bot(since, lambda m: m.kind == "poll")
    assert poll.poll is not None and poll.poll["is_anonymous"] is False
    assert [o["text"] for o in poll.poll["options"]] == ["Number 1", "Number 2", "Number 3"]
    assert poll.reply_to_message_id == collage.message_id
    assert len(ds.submits) == 3  # comparing costs nothing


async def test_compare_in_private_has_no_poll_and_history_resends(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5302)
    await run_batch(tg, ann, seed=70)
    since = len(tg.sent)
    collage = await ann.command("compare", predicate=lambda m: m.kind == "photo")
    assert "Forward" in collage.body
    await ann.command("history")  # a round trip: everything before it is handled
    assert not any(m.kind == "poll" for m in tg.sent[since:])
    history = tg.sent[-1]
    assert "recent try-ons" in history.body and len(history.buttons) == 3
    label = history.buttons[0][0]
    again = await ann.press(history, label, predicate=lambda m: m.kind == "photo")
    assert again.params.get("photo") and "Full size" in str(again.buttons)
    assert len(ds.submits) == 3  # no new try-on


async def test_compare_and_history_in_chinese(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    li = Actor(tg, 5303, lang="zh-hans", name="Li")
    nothing = await li.command("compare")
    assert "至少有 2 次" in nothing.body
    empty = await li.command("history")
    assert "没有可显示" in empty.body


async def test_tryon_replying_to_an_album_in_a_group_tries_each_garment(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    tg.privacy_mode = False  # the bot sees the friend's album (as an admin would)
    group = tg.group(GROUP_ID, "Shopping")
    ann = Actor(tg, 5401, chat=group, name="Ann")
    bob = Actor(tg, 5402, chat=group, name="Bob")
    posted = await tg.send_album_items(group, bob.user, [jpeg(seed=80), jpeg(seed=81)])
    await ann.command(
        "help", predicate=lambda m: "Virtual" in m.body
    )  # round trip: the album has been seen
    offer = await ann.command(
        "tryon", reply_to=posted[1], predicate=lambda m: "Try each one on" in str(m.buttons)
    )
    assert "2 tops" in offer.body
    step1 = await ann.press(offer, "Try each one on", predicate=lambda m: "Step 1" in m.body)
    since = len(tg.sent)
    await ann.photo(jpeg(seed=82), reply_to=step1)
    await tg.wait_for(lambda: len(album_sent(tg, GROUP_ID, since)) == 2, timeout=20)
    assert len(ds.submits) == 2


async def test_an_album_outside_a_flow_gets_one_hint(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5501)
    since = len(tg.sent)
    await tg.send_album_items(ann.chat, ann.user, [jpeg(seed=90), jpeg(seed=91), jpeg(seed=92)])
    await ann.command("help", predicate=lambda m: "Virtual try-on" in m.body)
    hints = [m for m in tg.sent[since:] if "/tryon to start" in m.body]
    assert len(hints) == 1


async def test_albums_that_cannot_be_used_get_one_message_and_cost_nothing(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5601)
    await ann.command("tryon")
    since = len(tg.sent)
    await tg.send_album_items(ann.chat, ann.user, [jpeg(seed=n) for n in range(100, 107)])
    answer = await ann.next_from_bot(since, lambda m: "more garments" in m.body)
    assert "up to 5 tops" in answer.body
    await ann.command("help", predicate=lambda m: "Virtual try-on" in m.body)
    assert len([m for m in tg.sent[since:] if "more garments" in m.body]) == 1
    since = len(tg.sent)
    await tg.send_album_items(
        ann.chat,
        ann.user,
        [AlbumItem(jpeg(seed=110), caption="me"), AlbumItem(jpeg(seed=111), caption="Me")],
    )
    await ann.next_from_bot(since, lambda m: "more than one photo" in m.body)
    await ann.command("help", predicate=lambda m: "Virtual try-on" in m.body)
    assert len([m for m in tg.sent[since:] if "more than one photo" in m.body]) == 1
    assert ds.submits == [] and ds.upload_count == 0


async def test_a_wrong_guess_is_fixed_with_a_button(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5602)
    await ann.command("tryon")
    top, person = jpeg(600, 900, seed=120), jpeg(500, 800, seed=121)
    since = len(tg.sent)
    await tg.send_album_items(ann.chat, ann.user, [top, person])  # the wrong way round
    prompt = await ann.next_from_bot(since, lambda m: "Step 3" in m.body)
    fixed = await ann.press(prompt, "Swap person and top", predicate=lambda m: "Fixed" in m.body)
    assert "Step 3" in fixed.body
    since = len(tg.sent)
    await ann.command("skip")
    await ann.result(since)
    assert len(ds.submits) == 1
    person_url = ds.submits[0]["body"]["input"]["person_image_url"]
    uploaded = Image.open(io.BytesIO(ds.uploads[person_url.removeprefix("oss://")]))
    assert uploaded.size == (500, 800)  # the second photo went as the person


async def test_a_batch_in_chinese(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    li = Actor(tg, 5603, lang="zh-hans", name="Li")
    await li.command("tryon")
    await li.photo(jpeg(seed=130))
    since = len(tg.sent)
    await tg.send_album_items(li.chat, li.user, [jpeg(seed=131), jpeg(seed=132), jpeg(seed=133)])
    offer = await li.next_from_bot(since, lambda m: "逐件试穿" in str(m.buttons))
    assert "3 件上装" in offer.body and "共 3 次" in offer.body
    since = len(tg.sent)
    await li.press(offer, "逐件试穿", predicate=lambda m: "已完成" in m.body)
    await tg.wait_for(lambda: len(album_sent(tg, li.chat_id, since)) == 3, timeout=20)
    follow = await li.next_from_bot(since, lambda m: "对比" in str(m.buttons))
    assert "3 张试衣效果" in follow.body
    collage = await li.press(follow, "对比", predicate=lambda m: m.kind == "photo")
    assert "转发" in collage.body
