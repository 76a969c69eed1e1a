"""The one way a try-on starts: the last step of the conversation, "Try again" and
"Another garment" (which leads back to the last step) all end here."""

from __future__ import annotations

from handlers.context import Context
from services.model import Job
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


async def start_tryon(context: Context, job: Job) -> str | None:
    """Admits, stores and starts a job; returns why it was refused, or None."""
    svc = context.services
    try:
        refusal = await svc.runner.launch(job, admit=lambda: svc.quota.check(job.user_id))
    except QueueFull:
        return context.t("too_many_running", job.lang)
    return refusal_text(context, job.lang, refusal) if refusal is not None else None
