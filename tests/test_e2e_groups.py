"""Groups, end to end: the real Application over HTTP against both test doubles, with the
Telegram double delivering only what Telegram would (privacy mode, topics, migration)."""

from __future__ import annotations

from typing import Any

import pytest
from telegram.ext import Application

from handlers.keyboards import parse_callback
from services.model import Job
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import handled, jpeg, services_of

JSON = dict[str, Any]
GROUP_ID = -100_111


def member(
    tg: FakeTelegram, user_id: int, chat: JSON, name: str, thread_id: int | None = None
) -> Actor:
    return Actor(tg, user_id, chat=chat, name=name, thread_id=thread_id)


def last(actor: Actor) -> JSON:
    """The message `actor` sent last."""
    assert actor.last_sent is not None
    return actor.last_sent


def unique_id(message: JSON) -> str:
    """The file_unique_id of the (largest) photo a user's message carries."""
    return str(message["photo"][-1]["file_unique_id"])


async def settle(watcher: Actor, bot: Application) -> None:  # type: ignore[type-arg]
    """Waits until the bot has handled everything sent so far (members' updates run
    concurrently), then a round trip by a member with no flow."""
    await handled(watcher.tg, bot)
    await watcher.command(
        "help",
        predicate=lambda m: m.reply_to_message_id == (watcher.last_sent or {}).get("message_id"),
    )


async def press_as(tg: FakeTelegram, actor: Actor, message: SentMessage, label: str) -> JSON:
    """`actor` presses a button of `message`; returns the bot's answer to the query."""
    query_id = tg.press_button(actor.chat, actor.user, message, message.button_data(label))
    return await tg.wait_for(
        lambda: next(
            (a for a in tg.callback_answers if a.get("callback_query_id") == query_id), None
        )
    )


def is_alert(answer: JSON) -> bool:
    return str(answer.get("show_alert")).lower() == "true"


async def job_of(bot: Application, message: SentMessage) -> Job:  # type: ignore[type-arg]
    """The job behind a result (its buttons carry the job id)."""
    parsed = parse_callback(message.button_data("Full size"))
    assert parsed is not None
    job = await services_of(bot).store.get(parsed.argument)
    assert job is not None
    return job


def sent_by(tg: FakeTelegram, actor: Actor) -> set[int]:
    """Ids of the messages `actor` sent (as delivered to the bot)."""
    messages = (u["message"] for u in tg.delivered if "message" in u)
    return {m["message_id"] for m in messages if m["from"]["id"] == actor.user["id"]}


def statuses(tg: FakeTelegram, chat_id: int) -> list[SentMessage]:
    """Status messages (each starts with the elapsed time line)."""
    return [m for m in tg.messages_to(chat_id) if "⏱" in (m.raw_text or "")]


# ---- privacy mode ----------------------------------------------------------------------


async def test_a_full_try_on_in_a_group_under_privacy_mode(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann = member(tg, 3001, group, "Ann")
    step1 = await ann.command("tryon")
    assert "Step 1" in step1.body
    prompts = [step1]
    # A plain photo to the group (no reply to the bot) never reaches a privacy-mode bot.
    hidden = len(tg.undelivered)
    tg.send_photo(group, ann.user, jpeg(seed=99))
    assert len(tg.undelivered) == hidden + 1
    person = await ann.photo(jpeg(seed=1))
    assert "Step 2" in person.body  # the plain photo changed nothing
    prompts.append(person)
    prompts.append(await ann.photo(jpeg(seed=2)))
    assert "Step 3" in prompts[-1].body
    top = last(ann)
    since = len(tg.sent)
    await ann.command("skip")
    result = await ann.result(since)
    for prompt in prompts:  # each replies to Ann and forces only her reply
        assert prompt.force_reply and prompt.selective, prompt
        assert prompt.reply_to_message_id is not None
    assert result.reply_to_message_id == top["message_id"]
    assert ds.upload_count == 2 and len(ds.submits) == 1
    # Few messages: three prompts, one status (edited, then deleted), the result.
    assert len(tg.messages_to(GROUP_ID)) == 5
    assert len(statuses(tg, GROUP_ID)) == 1
    await tg.wait_for(lambda: statuses(tg, GROUP_ID)[0].deleted)


@pytest.mark.parametrize("setup", ["privacy_off", "bot_admin"])
async def test_ordinary_photos_never_feed_a_flow_when_the_bot_sees_everything(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    setup: str,
) -> None:
    if setup == "privacy_off":
        tg.privacy_mode = False
    group = tg.group(GROUP_ID, "Friends", bot_is_admin=setup == "bot_admin")
    ann, bob = member(tg, 3011, group, "Ann"), member(tg, 3012, group, "Bob")
    watcher = member(tg, 3013, group, "Wes")
    await ann.command("tryon")
    delivered = len(tg.delivered)
    tg.send_photo(group, ann.user, jpeg(seed=3))  # Ann, mid-flow, shares a photo
    tg.send_photo(group, bob.user, jpeg(seed=4))  # Bob shares one too
    tg.send_text(group, ann.user, "look at this")
    tg.send_document(group, bob.user, jpeg(seed=5), "dress.jpg", "image/jpeg")
    assert len(tg.delivered) == delivered + 4  # the bot does see them
    since = len(tg.sent)
    await settle(watcher, bot)
    assert [m.reply_to_message_id for m in tg.sent[since:]] == [last(watcher)["message_id"]]
    assert ds.upload_count == 0 and tg.calls_of("getFile") == []
    step2 = await ann.photo(jpeg(seed=6))  # her reply to the prompt still counts
    assert "Step 2" in step2.body


# ---- members -----------------------------------------------------------------------------


async def test_members_run_independent_flows(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann, bob = member(tg, 3021, group, "Ann"), member(tg, 3022, group, "Bob")
    cid = member(tg, 3023, group, "Cid")
    await ann.command("tryon")
    await bob.command("tryon")
    await ann.photo(jpeg(seed=10))
    ann_person = last(ann)
    ann_step2 = ann.last_prompt
    assert ann_step2 is not None and "Step 2" in ann_step2.body
    await bob.photo(jpeg(seed=20))
    bob_person = last(bob)

    # Cid, with no flow, answers Ann's prompt with a photo, skips and cancels: nothing moves.
    downloads = len(tg.calls_of("getFile"))
    since = len(tg.sent)
    tg.send_photo(group, cid.user, jpeg(seed=30), reply_to=ann_step2)
    tg.send_command(group, cid.user, "skip")
    await settle(cid, bot)
    assert len(tg.sent) == since + 1 and len(tg.calls_of("getFile")) == downloads
    reply = await cid.command("cancel")
    assert "nothing to cancel" in reply.body.lower()

    # Bob answers Ann's prompt with his top: it fills his own flow, not hers.
    step3 = await bob.photo(jpeg(seed=21), reply_to=ann_step2)
    assert "Step 3" in step3.body and step3.reply_to_message_id == last(bob)["message_id"]
    bob_top = last(bob)
    step3 = await ann.photo(jpeg(seed=11))
    assert "Step 3" in step3.body  # Ann was still at step 2
    ann_top = last(ann)
    ds.hold_tasks()
    since = len(tg.sent)
    await bob.command("skip")
    await ann.command("skip")
    await ds.wait_for(lambda: len(ds.submits) == 2)
    for submit in ds.submits:
        ds.complete(submit["task_id"])
    ann_result = await ann.next_from_bot(
        since,
        lambda m: m.kind == "photo" and m.reply_to_message_id == ann_top["message_id"],
    )
    bob_result = await bob.next_from_bot(
        since,
        lambda m: m.kind == "photo" and m.reply_to_message_id == bob_top["message_id"],
    )
    ann_job, bob_job = await job_of(bot, ann_result), await job_of(bot, bob_result)
    assert (ann_job.user_id, bob_job.user_id) == (3021, 3022)
    assert ann_job.person.unique_id == unique_id(ann_person)
    assert ann_job.top is not None and ann_job.top.unique_id == unique_id(ann_top)
    assert bob_job.person.unique_id == unique_id(bob_person)
    assert bob_job.top is not None and bob_job.top.unique_id == unique_id(bob_top)
    assert ann_job.bottom is None and bob_job.bottom is None


async def test_one_members_cancel_and_skip_leave_the_others_flow_alone(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann, bob = member(tg, 3031, group, "Ann"), member(tg, 3032, group, "Bob")
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))  # Ann is at step 2 (top)
    await bob.command("tryon")
    await bob.photo(jpeg(seed=5))
    skipped = await bob.command("skip")  # Bob skips his own top
    assert "Step 3" in skipped.body and skipped.reply_to_message_id == last(bob)["message_id"]
    canceled = await bob.command("cancel")
    assert "canceled" in canceled.body.lower()
    assert canceled.reply_to_message_id == last(bob)["message_id"]
    since = len(tg.sent)
    tg.send_command(group, bob.user, "skip")  # Bob has no flow any more: silence
    await settle(bob, bot)
    assert len(tg.sent) == since + 1
    step3 = await ann.photo(jpeg(seed=2))
    assert "Step 3" in step3.body  # her top: Bob's /skip and /cancel did not touch her flow
    since = len(tg.sent)
    await ann.command("skip")
    await ann.result(since)
    assert len(ds.submits) == 1


async def test_buttons_answer_only_their_owner(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann, bob = member(tg, 3041, group, "Ann"), member(tg, 3042, group, "Bob")
    since = await ann.try_on(top=jpeg(seed=1))
    result = await ann.result(since)

    def changed_nothing(sent: int, submits: int) -> None:
        assert len(tg.sent) == sent and len(ds.submits) == submits
        assert all(not m.edits for m in tg.sent if m.message_id == result.message_id)

    for label in ("Full size", "Another garment", "Start over"):
        sent, submits = len(tg.sent), len(ds.submits)
        answer = await press_as(tg, bob, result, label)
        assert is_alert(answer) and "someone else" in answer["text"]
        changed_nothing(sent, submits)

    # A failure notice's buttons too.
    ds.script_next_task("FAILED", "InternalError")
    since = len(tg.sent)
    await ann.press(result, "Another garment")
    await ann.photo(jpeg(seed=2))
    await ann.command("skip")
    notice = await ann.next_from_bot(since, lambda m: "had a problem" in m.body)
    for label in ("Try again", "Start over"):
        sent, submits = len(tg.sent), len(ds.submits)
        answer = await press_as(tg, bob, notice, label)
        assert is_alert(answer) and "someone else" in answer["text"]
        changed_nothing(sent, submits)
    # The owner's press works.
    since = len(tg.sent)
    answer = await press_as(tg, ann, notice, "Try again")
    assert not is_alert(answer)
    await ann.result(since)
    assert len(ds.submits) == 3


# ---- forum topics ------------------------------------------------------------------------


async def test_forum_topics_keep_each_flow_in_its_topic(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    forum = tg.group(GROUP_ID, "Shop", forum=True)
    ann_user, bob_user = tg.user(3051, "Ann"), tg.user(3052, "Bob")
    red, blue = tg.create_topic(forum, ann_user, "Red"), tg.create_topic(forum, bob_user, "Blue")
    ann = member(tg, 3051, forum, "Ann", thread_id=red)
    bob = member(tg, 3052, forum, "Bob", thread_id=blue)
    ds.hold_tasks()
    await ann.command("tryon")
    await bob.command("tryon")
    await ann.photo(jpeg(seed=1))
    await bob.photo(jpeg(seed=2))
    await bob.photo(jpeg(seed=3))
    await ann.photo(jpeg(seed=4))
    await ann.command("skip")
    await bob.photo(jpeg(seed=5))  # Bob's bottom: his flow submits
    await ds.wait_for(lambda: len(ds.submits) == 2)
    await tg.wait_for(lambda: all(s.edits for s in statuses(tg, GROUP_ID)) or None)
    for submit in ds.submits:
        ds.complete(submit["task_id"])
    ann_result = await ann.result(0)
    bob_result = await bob.result(0)
    assert (ann_result.thread_id, bob_result.thread_id) == (red, blue)
    full = await ann.press(ann_result, "Full size", predicate=lambda m: m.kind == "document")
    assert full.thread_id == red
    again = await bob.press(bob_result, "Another garment")
    assert again.thread_id == blue and "Step 2" in again.body

    sent = tg.messages_to(GROUP_ID)
    assert {m.thread_id for m in sent} == {red, blue}
    ann_ids, bob_ids = sent_by(tg, ann), sent_by(tg, bob)
    for message in sent:  # prompts, statuses, results: each in its owner's topic
        if message.reply_to_message_id in ann_ids:
            assert message.thread_id == red, message
        elif message.reply_to_message_id in bob_ids:
            assert message.thread_id == blue, message
        else:  # the full-size file answers the result
            assert message.reply_to_message_id == ann_result.message_id, message
    assert len(statuses(tg, GROUP_ID)) == 2
    assert {a.thread_id for a in tg.chat_actions if a.chat_id == GROUP_ID} <= {red, blue}


async def test_try_this_on_inside_a_topic(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    forum = tg.group(GROUP_ID, "Shop", forum=True)
    bob_user = tg.user(3056, "Bob")
    topic = tg.create_topic(forum, bob_user, "Dresses")
    ann = member(tg, 3055, forum, "Ann", thread_id=topic)
    garment = tg.send_photo(forum, bob_user, jpeg(seed=7), thread_id=topic)
    question = await ann.command("tryon", reply_to=garment)
    assert question.thread_id == topic and question.buttons
    step1 = await ann.press(question, "Dress")
    assert step1.thread_id == topic and "Step 1" in step1.body
    since = len(tg.sent)
    await ann.photo(jpeg(seed=8))
    result = await ann.result(since)
    assert result.thread_id == topic
    assert {m.thread_id for m in tg.messages_to(GROUP_ID)} == {topic}


# ---- flood limits ------------------------------------------------------------------------


async def test_a_flooded_group_still_gets_its_result_after_the_wait(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann = member(tg, 3061, group, "Ann")
    tg.flood("sendPhoto", GROUP_ID, retry_after=1)
    since = await ann.try_on(top=jpeg(seed=1))
    result = await ann.result(since)
    refused, accepted = tg.calls_of("sendPhoto")
    assert refused.status == 429 and accepted.ok
    assert accepted.time - refused.time >= 1.0  # it waited as long as Telegram asked
    assert result.reply_to_message_id in sent_by(tg, ann)


async def test_a_groups_flood_wait_holds_up_nobody_else(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann, zed = member(tg, 3065, group, "Ann"), Actor(tg, 3066, name="Zed")
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))
    await ann.photo(jpeg(seed=2))
    tg.flood("sendMessage", GROUP_ID, retry_after=2)
    since = len(tg.sent)
    tg.send_command(group, ann.user, "skip")  # her status message meets flood control
    await tg.wait_for_call("sendMessage", lambda c: c.status == 429)
    await zed.command("help")  # answered at once, in the middle of the group's wait
    await ann.result(since)
    refused, accepted = (c for c in tg.calls_of("sendMessage") if "⏱" in c.params["text"])
    helped = next(c for c in tg.calls_of("sendMessage") if str(c.params["chat_id"]) == "3066")
    assert refused.time < helped.time < accepted.time


async def test_busy_groups_stay_under_the_limit_and_results_come_first(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    tg.enforce_group_limit(per_minute=20, window=60)
    members = [member(tg, 3070 + n, group, name) for n, name in enumerate(("Ann", "Bob", "Cid"))]
    ds.hold_tasks()
    for index, actor in enumerate(members):
        await actor.command("tryon")
        await actor.photo(jpeg(seed=10 + index))
        await actor.photo(jpeg(seed=20 + index))
    since = len(tg.sent)
    for actor in members:
        await actor.command("skip")
    await ds.wait_for(lambda: len(ds.submits) == 3)
    # The bot edits its status messages only while the group's minute has room to spare.
    budget = services_of(bot).gateway.budget
    await tg.wait_for(lambda: not budget.can_spend(GROUP_ID))
    for submit in ds.submits:
        ds.complete(submit["task_id"])
    for actor in members:
        await actor.result(since)
    assert len(statuses(tg, GROUP_ID)) == 3  # one status per try-on, edited in place
    assert any(s.edits for s in statuses(tg, GROUP_ID))
    refused = [c for c in tg.calls if c.status == 429]
    assert refused == [], tg.summary()


# ---- "try this on" -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Dress", "Top", "Bottom"])
async def test_try_this_on_a_photo_another_member_posted(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    kind: str,
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann, bob = member(tg, 3081, group, "Ann"), member(tg, 3082, group, "Bob")
    garment = tg.send_photo(group, bob.user, jpeg(seed=50), caption="new in!")
    assert tg.undelivered[-1]["message"] == garment  # privacy mode: the bot never saw it
    question = await ann.command("tryon", reply_to=garment)
    assert "What is this garment" in question.body
    assert question.reply_to_message_id == last(ann)["message_id"]
    assert [label for label, _ in question.buttons][:3] == ["👕 Top", "👖 Bottom", "👗 Dress"]
    answer = await press_as(tg, bob, question, kind)  # not Bob's question
    assert is_alert(answer)
    command = last(ann)
    step1 = await ann.press(question, kind)
    assert "Step 1" in step1.body and step1.force_reply and step1.selective
    assert step1.reply_to_message_id == command["message_id"]
    assert question.buttons == [] and step1.body.startswith("Ann ")  # answered; Ann's turn
    since = len(tg.sent)
    if kind == "Dress":
        await ann.photo(jpeg(seed=51))  # a dress needs no bottom: this submits
    else:
        step = await ann.photo(jpeg(seed=51))
        assert ("Step 3" if kind == "Top" else "Step 2") in step.body
        since = len(tg.sent)
        await ann.command("skip")
    result = await ann.result(since)
    inputs = ds.submits[-1]["body"]["input"]
    job = await job_of(bot, result)
    if kind == "Bottom":
        assert "top_garment_url" not in inputs and "bottom_garment_url" in inputs
        assert job.bottom is not None and job.bottom.unique_id == unique_id(garment)
    else:
        assert "top_garment_url" in inputs and "bottom_garment_url" not in inputs
        assert job.top is not None and job.top.unique_id == unique_id(garment)


# ---- my photo ----------------------------------------------------------------------------


async def test_my_photo_is_saved_reused_and_removed(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann, bob = member(tg, 3091, group, "Ann"), member(tg, 3092, group, "Bob")
    ask = await ann.command("me")
    assert "photo of yourself" in ask.body and ask.force_reply
    saved = await ann.photo(jpeg(seed=1))
    assert "Saved" in saved.body
    mine = last(ann)
    await ds.wait_for(lambda: ds.upload_count == 1)  # uploaded in the background

    shown = await ann.command("me")
    assert shown.kind == "photo" and shown.file_id == mine["photo"][-1]["file_id"]
    assert not isinstance(tg.calls_of("sendPhoto")[-1].params["photo"], bytes)
    assert shown.reply_to_message_id == last(ann)["message_id"]

    # A new try-on starts at the garment, with a way to use another photo.
    since = len(tg.sent)
    step2 = await ann.command("tryon", predicate=lambda m: "Step 2" in m.body)
    assert step2.force_reply and step2.selective
    offer = next(m for m in tg.sent[since:] if m.buttons)
    assert "saved photo" in offer.body
    assert any("another photo" in label for label, _ in offer.buttons)
    await ann.photo(jpeg(seed=2))
    since = len(tg.sent)
    await ann.command("skip")
    await ann.result(since)
    assert ds.upload_count == 2  # the saved photo's upload was reused
    person_url = ds.submits[-1]["body"]["input"]["person_image_url"]

    # "Use another photo" goes back to step 1; Bob can't press it.
    since = len(tg.sent)
    await ann.command("tryon", predicate=lambda m: "Step 2" in m.body)
    offer = next(m for m in tg.sent[since:] if m.buttons)
    assert is_alert(await press_as(tg, bob, offer, "another photo"))
    step1 = await ann.press(offer, "another photo")
    assert "Step 1" in step1.body and step1.force_reply
    assert step1.reply_to_message_id == last(ann)["message_id"]
    await ann.photo(jpeg(seed=3))
    since = len(tg.sent)
    await ann.photo(jpeg(seed=4))
    await ann.command("skip")
    await ann.result(since)
    assert ds.submits[-1]["body"]["input"]["person_image_url"] != person_url

    # Removing it: Bob can't, Ann can; then try-ons ask for a person again.
    shown = await ann.command("me")
    assert is_alert(await press_as(tg, bob, shown, "Delete"))
    tg.press_button(ann.chat, ann.user, shown, shown.button_data("Delete"))
    await tg.wait_for(lambda: any("deleted" in e for e in shown.edits))
    step1 = await ann.command("tryon")
    assert "Step 1" in step1.body


async def test_forget_deletes_the_saved_photo_and_drafts(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann = member(tg, 3101, group, "Ann")
    await ann.command("me")
    await ann.photo(jpeg(seed=1))
    step2 = await ann.command("tryon", predicate=lambda m: "Step 2" in m.body)
    assert step2.force_reply
    done = await ann.command("forget")
    assert "deleted" in done.body
    assert await services_of(bot).profiles.get(3101) is None
    assert "flows" not in bot.user_data.get(3101, {})
    since, downloads = len(tg.sent), len(tg.calls_of("getFile"))
    tg.send_photo(group, ann.user, jpeg(seed=2), reply_to=step2)  # the old prompt leads nowhere
    ask = await ann.command("me")
    assert "photo of yourself" in ask.body
    assert tg.sent[since:] == [ask]  # no answer to the stale reply, and no state was kept
    assert len(tg.calls_of("getFile")) == downloads
    assert ds.submits == []


# ---- commands, mentions, anonymous admins, migration ---------------------------------------


async def test_commands_are_registered_per_scope_and_language(
    tg: FakeTelegram,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    def names(scope: str, lang: str = "") -> list[str]:
        return [c["command"] for c in tg.commands_for(scope, lang)]

    private = ["tryon", "me", "cancel", "help", "compare", "history", "language", "forget"]
    assert names("all_private_chats") == private
    assert names("all_private_chats", "zh") == names("all_private_chats")
    group = ["tryon", "me", "cancel", "help", "compare", "history", "language"]
    assert names("all_group_chats") == group
    assert names("all_group_chats", "zh") == names("all_group_chats")
    zh = {c["command"]: c["description"] for c in tg.commands_for("all_group_chats", "zh")}
    en = {c["command"]: c["description"] for c in tg.commands_for("all_group_chats")}
    assert zh["tryon"] == "给人物试穿衣服" and en["tryon"] == "Try clothes on a person"


@pytest.mark.parametrize("privacy", [True, False])
async def test_commands_addressed_to_other_bots_are_ignored(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    privacy: bool,
) -> None:
    tg.privacy_mode = privacy
    group = tg.group(GROUP_ID, "Friends")
    ann, watcher = member(tg, 3111, group, "Ann"), member(tg, 3112, group, "Wes")
    since = len(tg.sent)
    tg.send_command(group, ann.user, "tryon", mention="OtherBot")
    tg.send_as_anonymous_admin(group, "/tryon@OtherBot")
    await settle(watcher, bot)
    assert len(tg.sent) == since + 1  # only the answer to the /help
    tg.send_command(group, ann.user, "tryon", mention=True)
    prompt = await ann.next_from_bot(since + 1)
    assert "Step 1" in prompt.body


async def test_anonymous_admins_are_asked_to_use_their_own_account(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    watcher = member(tg, 3121, group, "Wes")
    since = len(tg.sent)
    command = tg.send_as_anonymous_admin(group, "/tryon")
    reply = await tg.wait_for_message(GROUP_ID, since=since)
    assert "posting as the group" in reply.body
    assert reply.reply_to_message_id == command["message_id"]
    assert not reply.force_reply
    since = len(tg.sent)
    tg.send_as_anonymous_admin(group, photo=jpeg(seed=1), reply_to=reply)
    await settle(watcher, bot)
    assert len(tg.sent) == since + 1 and ds.upload_count == 0


async def test_a_flow_survives_the_group_becoming_a_supergroup(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann = member(tg, 3131, group, "Ann")
    await ann.command("tryon")
    await ann.photo(jpeg(seed=1))
    person = last(ann)
    since = len(tg.sent)
    supergroup = tg.migrate_group_to_supergroup(group)
    ann.chat, ann.last_prompt = supergroup, None
    # The old prompt is in a chat that no longer exists: the bot asks again in the new one.
    again = await ann.next_from_bot(since, lambda m: m.force_reply)
    assert "Step 2" in again.body and again.selective
    assert "Ann" in again.body  # the ForceReply is for Ann alone
    step3 = await ann.photo(jpeg(seed=2))
    assert "Step 3" in step3.body and step3.chat_id == supergroup["id"]
    top = last(ann)
    since = len(tg.sent)
    await ann.command("skip")
    result = await ann.result(since)
    assert result.chat_id == supergroup["id"]
    assert result.reply_to_message_id == top["message_id"]
    job = await job_of(bot, result)
    assert job.chat_id == supergroup["id"] and job.person.unique_id == unique_id(person)
    assert ds.upload_count == 2  # the person photo was not uploaded again


async def test_a_try_on_running_while_the_group_migrates_ends_in_the_supergroup(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    group = tg.group(GROUP_ID, "Friends")
    ann = member(tg, 3141, group, "Ann")
    ds.hold_tasks()
    await ann.try_on(top=jpeg(seed=1))
    await ds.wait_for(lambda: len(ds.submits) == 1)
    supergroup = tg.migrate_group_to_supergroup(group)
    ann.chat = supergroup
    since = len(tg.sent)
    ds.complete(ds.submits[0]["task_id"])
    result = await ann.result(since, timeout=5)
    assert result.chat_id == supergroup["id"]
