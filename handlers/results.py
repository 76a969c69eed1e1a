"""The buttons under a result or a failure notice that act on a finished job:
"Full size" (the uncompressed file), "Try again" (the same inputs, a new task),
"Another take" (the same inputs again, replying to the result) and "HD" (the refiner on
the result; the gender it needs is asked once and kept in the profile)."""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.ext import Application, CallbackQueryHandler

from handlers.common import say
from handlers.context import Context
from handlers.delivery import failure_text
from handlers.keyboards import Action, confirm_markup, gender_row, parse_callback, pattern
from handlers.launch import button_job, start_tryon
from services.dashscope import DashScopeError
from services.model import GENDERS, FailureKind, Job, JobKind, JobState
from services.tryon.failures import Failure
from services.tryon.hd import refine_job

FEW_LEFT = 3  # below this many try-ons left today, a paid button asks first


def has_paid_result(job: Job) -> bool:
    """A result DashScope made that the user has not received: resent, never rerun."""
    return job.result_url is not None and (
        job.state is JobState.UNDELIVERED
        or (job.state is JobState.FAILED and job.failure is FailureKind.UNDELIVERABLE)
    )


async def on_full_size(update: Update, context: Context) -> None:
    """Sends the result as a file: Telegram recompresses photos, documents keep every pixel."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    svc = context.services
    job = await button_job(update, context, parsed.argument if parsed else None)
    if job is None or job.result_url is None:
        await query.answer(context.t("full_size_gone"), show_alert=True)
        return
    await query.answer(context.t("full_size_sending"))
    try:
        data = await svc.runner.full_size(job)
    except (DashScopeError, Failure):
        await say(
            update,
            context,
            context.t("full_size_gone"),
            thread_id=job.thread_id,
            reply_to=job.result_message_id,
        )
        return
    await svc.gateway.send_image(
        job.chat_id,
        data,
        None,
        thread_id=job.thread_id,
        reply_to=job.result_message_id,
        markup=None,
        as_document=True,
        filename="tryon-full.jpg",
    )


async def on_retry(update: Update, context: Context) -> None:
    """Runs a failed or interrupted job's inputs again: a new submit the user asked for."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    svc = context.services
    old = await button_job(update, context, parsed.argument if parsed else None)
    if old is not None and old.state is JobState.FAILING:  # its notice is just out
        old = await svc.runner.settled(old)
    if old is not None and has_paid_result(old):
        # A delivery problem: the stored result is sent again; nothing is submitted.
        if not await svc.runner.redeliver(old):
            await query.answer(context.t("full_size_gone"), show_alert=True)
            return
        await query.answer(context.t("result_resending"))
        if isinstance(query.message, Message):
            await svc.gateway.edit_markup(query.message)
        return
    if old is None or old.state not in (JobState.FAILED, JobState.INTERRUPTED):
        await query.answer(context.t("retry_unavailable"), show_alert=True)
        return
    refused = await start_tryon(context, old.rerun())
    if refused is not None:
        await query.answer(refused, show_alert=True)
        return
    await svc.store.update(old, state=JobState.RETRIED)
    await query.answer()
    if isinstance(query.message, Message):
        await svc.gateway.edit_markup(query.message)


async def _source(update: Update, context: Context) -> Job | None:
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    return await button_job(update, context, parsed.argument.rpartition("-")[2] if parsed else None)


async def _asked_first(update: Update, context: Context, action: Action, job: Job) -> bool:
    """Asks before spending one of the user's last few try-ons of the day; True if asked."""
    left = await context.services.quota.remaining(job.user_id)
    if left is None or left == 0 or left - 1 >= FEW_LEFT:
        return False  # no limit, plenty left, or none (start_tryon says why)
    await say(
        update,
        context,
        context.t("paid_confirm", n=left - 1),
        markup=confirm_markup(context.texts, context.lang, action, job.id, job.user_id),
        thread_id=job.thread_id,
        reply_to=job.result_message_id,
    )
    return True


async def on_take(update: Update, context: Context) -> None:
    """Another take: the same inputs as a new task (a new charge), replying to the result."""
    query = update.callback_query
    assert query is not None and query.data is not None
    job = await _source(update, context)
    if job is None or job.kind is not JobKind.TRYON or job.state is not JobState.DELIVERED:
        await query.answer(context.t("take_unavailable"), show_alert=True)
        return
    sure = query.data.startswith(Action.TAKE_SURE.value + ":")
    if not sure and await _asked_first(update, context, Action.TAKE_SURE, job):
        await query.answer()
        return
    refused = await start_tryon(context, job.another_take())
    await query.answer(refused or None, show_alert=refused is not None)
    if sure and isinstance(query.message, Message):
        await context.services.gateway.edit_markup(query.message)


async def on_hd(update: Update, context: Context) -> None:
    """HD: aitryon-refiner on a result; asks the gender the first time."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await _hd(update, context, sure=query.data.startswith(Action.HD_SURE.value + ":"))


async def _hd(update: Update, context: Context, *, sure: bool) -> None:
    query = update.callback_query
    assert query is not None
    svc = context.services
    if not svc.features.hd:
        await query.answer(context.t("hd_off"), show_alert=True)
        return
    job = await _source(update, context)
    if job is None:
        expired = failure_text(context.texts, context.lang, FailureKind.HD_EXPIRED)
        await query.answer(expired, show_alert=True)
        return
    gender = await svc.profiles.gender(job.user_id)
    try:
        refine = refine_job(job, gender or GENDERS[0], svc.runner.now())
    except Failure as failure:
        await query.answer()
        await say(
            update,
            context,
            failure_text(context.texts, context.lang, failure.kind),
            thread_id=job.thread_id,
            reply_to=job.result_message_id,
        )
        return
    if gender is None:
        await query.answer()
        markup = InlineKeyboardMarkup(
            [gender_row(context.texts, context.lang, job.user_id, job.id)]
        )
        await say(
            update,
            context,
            context.t("ask_gender"),
            markup=markup,
            thread_id=job.thread_id,
            reply_to=job.result_message_id,
        )
        return
    if not sure and await _asked_first(update, context, Action.HD_SURE, job):
        await query.answer()
        return
    refused = await start_tryon(context, refine)
    await query.answer(refused or None, show_alert=refused is not None)
    if sure and isinstance(query.message, Message):
        await svc.gateway.edit_markup(query.message)


async def on_gender(update: Update, context: Context) -> None:
    """Woman / Man: kept in the profile; pressed under the HD question, it goes on to HD."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    gender, _, job_id = (parsed.argument if parsed else "").partition("-")
    if gender not in GENDERS:
        await query.answer()
        return
    await context.services.profiles.set_gender(query.from_user.id, gender)
    if job_id and job_id != "-":  # the HD question: answered, its buttons go
        if isinstance(query.message, Message):
            await context.services.gateway.edit_markup(query.message)
        await _hd(update, context, sure=False)
        return
    await query.answer(context.t("gender_saved", gender=context.t(f"gender_{gender}")))


def register(application: Application) -> None:  # type: ignore[type-arg]
    application.add_handler(CallbackQueryHandler(on_full_size, pattern=pattern(Action.FULL)))
    application.add_handler(CallbackQueryHandler(on_retry, pattern=pattern(Action.RETRY)))
    # These start a job, and posting its status message may wait out a group's flood
    # control: like the conversation's submitting steps, they must not hold up others.
    for action, callback in (
        (Action.TAKE, on_take),
        (Action.TAKE_SURE, on_take),
        (Action.HD, on_hd),
        (Action.HD_SURE, on_hd),
        (Action.GENDER, on_gender),
    ):
        application.add_handler(
            CallbackQueryHandler(callback, pattern=pattern(action), block=False)
        )
