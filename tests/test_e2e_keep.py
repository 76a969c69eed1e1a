"""Keep my own top/bottom (aitryon-parsing-v1), another take, and HD (aitryon-refiner),
end to end: the real Application over HTTP against both test doubles, in English and
Chinese (labels and texts are taken from the catalogs, so each test runs in both)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from telegram.ext import Application

from handlers.keyboards import parse_callback
from handlers.texts import Texts
from tests.actors import Actor
from tests.doubles.dashscope import PARSING_MODEL, REFINER_MODEL, FakeDashScope
from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import jpeg, make_settings, running_bot, services_of
from tests.test_restart import Bot, operator

__all__ = ["operator"]  # the subprocess bot fixture of the restart tests

TEXTS = Texts.load()
LANGS = pytest.mark.parametrize("lang", ["en", "zh-hans"])


def t(lang: str, key: str, **values: Any) -> str:
    return TEXTS.get(lang, key, **values)


def is_document(message: SentMessage) -> bool:
    return message.kind == "document"


async def keep_top_then(ann: Actor, lang: str, bottom: bytes) -> int:
    """/tryon → person → "Keep my top" → bottom photo; returns where the outcome starts."""
    await ann.command("tryon")
    step2 = await ann.photo(jpeg(seed=11))
    step3 = await ann.press(step2, t(lang, "btn_keep_top"))
    assert t(lang, "ask_bottom") in step3.body
    since = len(ann.tg.sent)
    await ann.photo(bottom)
    return since


@LANGS
async def test_keep_my_top_with_a_new_bottom(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(PARSING_MODEL)
    ann = Actor(tg, 2001, lang=lang)
    prompt = await ann.command("tryon")
    prompt = await ann.photo(jpeg(seed=11))
    labels = [label for label, _ in prompt.buttons]
    assert t(lang, "btn_keep_top") in labels and t(lang, "btn_skip_top") in labels
    assert "/keep" in prompt.body and "/skip" in prompt.body
    step3 = await ann.press(prompt, t(lang, "btn_keep_top"))
    # At step 3, after no new top, "AI picks" is not the dress choice.
    assert t(lang, "btn_keep_bottom") in [label for label, _ in step3.buttons]
    # The parsing runs in the background as soon as the user chooses.
    await ds.wait_for(lambda: len(ds.parsing_calls) == 1)
    since = len(tg.sent)
    await ann.photo(jpeg(seed=12))
    result = await ann.result(since)
    assert t(lang, "kept_missing_top") not in (result.caption or "")
    parsing = ds.parsing_calls[0]["body"]
    assert parsing["parameters"]["clothes_type"] == ["upper"]
    assert parsing["input"]["image_url"].startswith("oss://")
    inputs = ds.submits[0]["body"]["input"]
    assert inputs["top_garment_url"].startswith(ds.origin + "/results/")  # the crop
    assert "-crop-" in inputs["top_garment_url"]
    assert inputs["bottom_garment_url"].startswith("oss://")
    assert inputs["person_image_url"] != parsing["input"]["image_url"]  # per-model uploads
    assert len(ds.parsing_calls) == 1 and len(ds.submits) == 1


@LANGS
async def test_keep_my_bottom_with_a_new_top_typed(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(PARSING_MODEL)
    ann = Actor(tg, 2002, lang=lang)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=11))
    step3 = await ann.photo(jpeg(seed=13))
    labels = [label for label, _ in step3.buttons]
    assert t(lang, "btn_skip_dress") in labels  # after a top, AI picks = also the dress way
    since = len(tg.sent)
    await ann.command("keep")
    await ann.result(since)
    assert ds.parsing_calls[0]["body"]["parameters"]["clothes_type"] == ["lower"]
    inputs = ds.submits[0]["body"]["input"]
    assert inputs["top_garment_url"].startswith("oss://")
    assert "-crop-" in inputs["bottom_garment_url"]


@LANGS
async def test_keeping_both_is_refused_and_the_flow_stays(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(PARSING_MODEL)
    ann = Actor(tg, 2003, lang=lang)
    await ann.command("tryon")
    await ann.photo(jpeg(seed=11))
    await ann.command("keep")
    refusal = await ann.command("keep")
    assert refusal.body == t(lang, "cannot_keep_both")
    refusal = await ann.command("skip")
    assert refusal.body == t(lang, "cannot_skip_kept")
    since = len(tg.sent)
    await ann.photo(jpeg(seed=14))  # still at step 3: this is the bottom
    await ann.result(since)
    inputs = ds.submits[0]["body"]["input"]
    assert "-crop-" in inputs["top_garment_url"] and inputs["bottom_garment_url"].startswith(
        "oss://"
    )


@LANGS
async def test_parsing_finds_no_top_the_model_picks_and_the_caption_says_so(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(PARSING_MODEL)
    ds.default_garments = frozenset({"lower"})  # this person wears no top
    ann = Actor(tg, 2004, lang=lang)
    since = await keep_top_then(ann, lang, jpeg(seed=15))
    result = await ann.result(since)
    assert t(lang, "kept_missing_top") in (result.caption or "")
    inputs = ds.submits[0]["body"]["input"]
    assert "top_garment_url" not in inputs and inputs["bottom_garment_url"].startswith("oss://")


@LANGS
async def test_parsing_error_is_retried_then_succeeds(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(PARSING_MODEL)
    ds.fail_next("parsing", 500, "InternalError")
    ann = Actor(tg, 2005, lang=lang)
    since = await keep_top_then(ann, lang, jpeg(seed=16))
    result = await ann.result(since)
    assert t(lang, "kept_missing_top") not in (result.caption or "")
    assert "-crop-" in ds.submits[0]["body"]["input"]["top_garment_url"]


@LANGS
async def test_parsing_that_keeps_failing_never_fails_the_try_on(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    """The parsing model is not on the account: the model picks, the caption says so."""
    ann = Actor(tg, 2006, lang=lang)
    since = await keep_top_then(ann, lang, jpeg(seed=17))
    result = await ann.result(since)
    assert t(lang, "kept_missing_top") in (result.caption or "")
    assert "top_garment_url" not in ds.submits[0]["body"]["input"]


@LANGS
async def test_saved_photo_and_another_garment_reuse_the_kept_crop(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(PARSING_MODEL)
    ann = Actor(tg, 2007, lang=lang)
    await ann.command("me")
    await ann.photo(jpeg(seed=11))  # saved
    step2 = await ann.command("tryon")  # starts at step 2 with the saved photo
    await ann.press(step2, t(lang, "btn_keep_top"))
    since = len(tg.sent)
    await ann.photo(jpeg(seed=18))
    result = await ann.result(since)
    step2 = await ann.press(result, t(lang, "btn_again"))
    await ann.press(step2, t(lang, "btn_keep_top"))
    since = len(tg.sent)
    await ann.photo(jpeg(seed=19))
    await ann.result(since)
    first, second = (s["body"]["input"] for s in ds.submits)
    assert first["top_garment_url"] == second["top_garment_url"]  # the crop, reused
    assert len(ds.parsing_calls) == 1


@LANGS
async def test_another_take_submits_the_same_inputs_and_replies_to_the_result(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ann = Actor(tg, 2008, lang=lang)
    since = await ann.try_on(top=jpeg(seed=20))
    first = await ann.result(since)
    since = len(tg.sent)
    await ann.press(first, t(lang, "btn_take"))
    second = await ann.result(since)
    assert second.reply_to_message_id == first.message_id
    assert len(ds.submits) == 2
    assert ds.submits[0]["body"]["input"] == ds.submits[1]["body"]["input"]
    assert ds.submits[0]["task_id"] != ds.submits[1]["task_id"]


@LANGS
async def test_another_take_asks_first_when_few_try_ons_are_left(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path, lang: str
) -> None:
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data", user_daily_limit=4)
    async with running_bot(settings):
        ann = Actor(tg, 2009, lang=lang)
        since = await ann.try_on(top=jpeg(seed=21))
        first = await ann.result(since)
        question = await ann.press(first, t(lang, "btn_take"))
        assert question.body == t(lang, "paid_confirm", n=2)
        assert len(ds.submits) == 1  # nothing spent yet
        since = len(tg.sent)
        await ann.press(question, t(lang, "btn_confirm"))
        second = await ann.result(since)
        assert second.reply_to_message_id == first.message_id
        assert len(ds.submits) == 2


@LANGS
async def test_hd_asks_the_gender_once_and_sends_a_document(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(REFINER_MODEL)
    ann = Actor(tg, 2010, lang=lang)
    since = await ann.try_on(top=jpeg(seed=22))
    result = await ann.result(since)
    question = await ann.press(result, t(lang, "btn_hd"))
    assert question.body == t(lang, "ask_gender")
    since = len(tg.sent)
    await ann.press(question, t(lang, "btn_gender_woman"))
    hd = await ann.next_from_bot(since, is_document)
    assert hd.reply_to_message_id == result.message_id
    assert hd.caption == t(lang, "hd_caption") and not hd.buttons
    tryon, refine = ds.submits
    assert refine["body"]["model"] == REFINER_MODEL
    assert refine["body"]["parameters"] == {"gender": "woman"}
    assert tryon["body"]["parameters"] == {"resolution": -1, "restore_face": True}
    assert refine["body"]["input"]["coarse_image_url"] == ds.tasks[tryon["task_id"]].image_url
    # Uploaded again for the refiner (uploads are bound to a model).
    assert refine["body"]["input"]["person_image_url"] != tryon["body"]["input"]["person_image_url"]
    # The second time, no question.
    since = await ann.try_on(top=jpeg(seed=23))
    result = await ann.result(since)
    since = len(tg.sent)
    await ann.press(result, t(lang, "btn_hd"), predicate=is_document)
    assert not any(m.body == t(lang, "ask_gender") for m in tg.sent[since:])
    # /me shows it.
    me = await ann.command("me")
    assert t(lang, "me_gender_unset") not in me.body


@LANGS
async def test_hd_with_a_kept_top_sends_the_crop(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(REFINER_MODEL, PARSING_MODEL)
    ann = Actor(tg, 2011, lang=lang)
    await services_of(bot).profiles.set_gender(2011, "man")
    since = await keep_top_then(ann, lang, jpeg(seed=24))
    result = await ann.result(since)
    await ann.press(result, t(lang, "btn_hd"), predicate=is_document)
    tryon, refine = ds.submits
    assert refine["body"]["input"]["top_garment_url"] == tryon["body"]["input"]["top_garment_url"]
    assert refine["body"]["parameters"] == {"gender": "man"}


@LANGS
async def test_hd_after_the_result_expired_is_refused(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    ds.enable_models(REFINER_MODEL)
    ann = Actor(tg, 2012, lang=lang)
    await services_of(bot).profiles.set_gender(2012, "woman")
    since = await ann.try_on(top=jpeg(seed=25))
    result = await ann.result(since)
    store = services_of(bot).store
    parsed = parse_callback(result.button_data(t(lang, "btn_hd")))
    assert parsed is not None
    job = await store.get(parsed.argument)
    assert job is not None and job.result_url is not None
    await store.update(job, finished_at=time.time() - 25 * 3600)  # a day later
    ds.expire_results()
    refusal = await ann.press(result, t(lang, "btn_hd"))
    assert refusal.body == t(lang, "fail_hd_expired")
    assert len(ds.submits) == 1


@LANGS
async def test_hd_job_resumes_after_a_restart(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path, lang: str
) -> None:
    ds.enable_models(REFINER_MODEL)
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data")
    ann = Actor(tg, 2013, lang=lang)
    async with running_bot(settings) as app:
        await services_of(app).profiles.set_gender(2013, "woman")
        since = await ann.try_on(top=jpeg(seed=26))
        result = await ann.result(since)
        ds.hold_tasks()
        since = len(tg.sent)
        await ann.press(result, t(lang, "btn_hd"))
        await ds.wait_for(lambda: len(ds.submits) == 2)
    # Restarted while the refiner works.
    async with running_bot(settings):
        ds.complete(ds.submits[1]["task_id"])
        hd = await ann.next_from_bot(since, is_document)
        assert hd.reply_to_message_id == result.message_id
    assert len(ds.submits) == 2  # resumed, never submitted again


async def test_hd_button_hidden_when_off_or_when_the_refiner_is_refused(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "off", hd=False)
    ann = Actor(tg, 2014)
    async with running_bot(settings):
        since = await ann.try_on(top=jpeg(seed=27))
        result = await ann.result(since)
        assert not any(t("en", "btn_hd") in label for label, _ in result.buttons)
    # On, but the account has no refiner: one ERROR line, then the button is gone.
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "on")
    async with running_bot(settings) as app:
        await services_of(app).profiles.set_gender(2014, "woman")
        since = await ann.try_on(top=jpeg(seed=28))
        result = await ann.result(since)
        assert any(t("en", "btn_hd") in label for label, _ in result.buttons)
        since = len(tg.sent)
        await ann.press(result, t("en", "btn_hd"))
        await tg.wait_for(
            lambda: any(m.body == t("en", "fail_service_unavailable") for m in tg.sent[since:])
        )
        since = await ann.try_on(top=jpeg(seed=29))
        result = await ann.result(since)
        assert not any(t("en", "btn_hd") in label for label, _ in result.buttons)
    refused = [r for r in caplog.records if "aitryon-refiner is not available" in r.message]
    assert len(refused) == 1 and refused[0].levelname == "ERROR"


async def test_keep_in_a_group_with_the_typed_command(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ds.enable_models(PARSING_MODEL)
    group = tg.group(-100_222, "Shop")
    ann = Actor(tg, 2015, chat=group)
    await ann.command("tryon")
    step2 = await ann.photo(jpeg(seed=30))
    assert step2.force_reply and "/keep" in step2.body
    await ann.command("keep", reply_to=step2)
    since = len(tg.sent)
    await ann.photo(jpeg(seed=31))
    result = await ann.result(since)
    assert "-crop-" in ds.submits[0]["body"]["input"]["top_garment_url"]
    assert result.reply_to_message_id is not None


@LANGS
async def test_me_shows_and_changes_the_gender_and_forget_deletes_it(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    profiles = services_of(bot).profiles
    ann = Actor(tg, 2016, lang=lang)
    await ann.command("me")
    await ann.photo(jpeg(seed=32))
    me = await ann.command("me")
    assert t(lang, "me_gender_unset") in me.body
    tg.press_button(ann.chat, ann.user, me, me.button_data(t(lang, "btn_gender_man")))
    await tg.wait_for(lambda: any(a.get("text") for a in tg.callback_answers))
    assert await profiles.gender(2016) == "man"
    me = await ann.command("me")
    assert t(lang, "me_gender", gender=t(lang, "gender_man")) in me.body
    assert any(t(lang, "btn_me_delete") in label for label, _ in me.buttons)
    tg.press_button(ann.chat, ann.user, me, me.button_data(t(lang, "btn_me_delete")))
    await tg.wait_for(lambda: t(lang, "me_deleted") in me.edits)
    assert await profiles.gender(2016) == "man"  # deleting the photo keeps the gender
    await ann.command("forget")
    assert await profiles.gender(2016) is None


async def test_hd_job_survives_sigkill(tg: FakeTelegram, ds: FakeDashScope, operator: Bot) -> None:
    """The bot is killed while the refiner works: the HD job resumes, is delivered once."""
    ds.enable_models(REFINER_MODEL)
    await operator.start()
    ann = Actor(tg, 2017)
    since = await ann.try_on(top=jpeg(seed=33))
    result = await ann.result(since)
    question = await ann.press(result, t("en", "btn_hd"))
    ds.hold_tasks()
    since = len(tg.sent)
    await ann.press(question, t("en", "btn_gender_woman"))
    await operator.until(
        lambda: (
            operator.rows("SELECT kind, state FROM jobs WHERE kind = 'refine'")
            == [("refine", "running")]
        )
    )
    await operator.stop(signal.SIGKILL)
    ds.complete(ds.submits[1]["task_id"])
    await operator.start()
    hd = await ann.next_from_bot(since, is_document)
    assert hd.reply_to_message_id == result.message_id
    await operator.until(lambda: operator.job_states() == ["delivered", "delivered"])
    assert len(ds.submits) == 2
    assert operator.rows("SELECT gender FROM profiles WHERE user_id = 2017") == [("woman",)]
