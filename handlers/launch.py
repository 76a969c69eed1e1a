"""The one way a try-on starts: the last step of the conversation, "Try again" and
"Another garment" (which leads back to the last step) all end here."""

from __future__ import annotations

import time

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from handlers.context import Context
from services.model import RESULT_LIFETIME, Job
from services.storage.jobs import FlowEnd
from services.tryon.quota import Refusal
from services.tryon.scheduler import QueueFull


def refusal_text(context: Context, lang: str, refusal: Refusal) -> str:
    wait = context.texts.duration(lang, max(60.0, refusal.resets_in), whole_minutes=True)
    return context.t(f"refused_{refusal.reason}", lang, wait=wait)


async def refused_at_start(context: Context, user_id: int, lang: str) -> str | None:
    """Why the user cannot start one more try-on now (said before asking for any photo)."""
    svc = context.services
    refusal = await svc.quota.check(user_id)
    if refusal is not None:
        return refusal_text(context, lang, refusal)
    if not svc.scheduler.has_room(user_id):
        return context.t("too_many_running", lang)
    return None


async def button_job(update: Update, context: Context, job_id: str | None) -> Job | None:
    """The job a pressed button acts on (None: gone). The job of another user or chat
    (forged callback data) gets the "not your button" alert and stops the update there
    (ApplicationHandlerStop): nothing changes."""
    job = await context.services.store.get(job_id) if job_id else None
    if job is not None and not owns_job(update, job):
        if update.callback_query is not None:
            await update.callback_query.answer(context.t("not_your_button"), show_alert=True)
        raise ApplicationHandlerStop
    return job


def owns_job(update: Update, job: Job) -> bool:
    """A button acts on a job only for the job's own user, in the job's own chat."""
    user, chat = update.effective_user, update.effective_chat
    return (
        user is not None
        and chat is not None
        and (job.user_id, job.chat_id)
        == (
            user.id,
            chat.id,
        )
    )


async def offer_undelivered(context: Context, chat_id: int, user_id: int) -> int:
    """Results the user could not receive (they had blocked the bot), sent again now that
    they are back, while DashScope still keeps them; returns how many."""
    svc = context.services
    jobs = await svc.store.undelivered_for(chat_id, user_id, time.time() - RESULT_LIFETIME)
    return sum([await svc.runner.redeliver(job) for job in jobs])


async def start_tryon(context: Context, job: Job, flow: FlowEnd | None = None) -> str | None:
    """Admits, stores and starts a job; returns why it was refused, or None. With `flow`,
    the conversation that asked for it ends in the transaction that writes the job."""
    svc = context.services
    try:
        refusal = await svc.runner.launch(
            job, admit=lambda: svc.quota.check(job.user_id), flow=flow
        )
    except QueueFull:
        return context.t("too_many_running", job.lang)
    return refusal_text(context, job.lang, refusal) if refusal is not None else None
