"""HD: a refine job (aitryon-refiner) made from a delivered try-on.

The refiner takes the try-on's own inputs (uploaded again, for the refiner's model; a
kept garment's crop URL as it was), its result as `coarse_image_url` and the person's
gender. It only accepts results made at `resolution=-1, restore_face=true` that still
exist (24 h), and it needs a top garment.
"""

from __future__ import annotations

from dataclasses import replace

from services.dashscope.client import REFINER_MODEL
from services.model import CROP_LIFETIME, GENDERS, FailureKind, InputImage, Job, JobKind, new_job_id
from services.tryon.failures import Failure

HD_MARGIN = 600.0  # a result with less life left than this cannot be refined in time


def can_refine(job: Job) -> bool:
    """Whether this result's HD button makes sense at all (expiry aside)."""
    return job.kind is JobKind.TRYON and job.refinable and job.has_top()


def refine_job(source: Job, gender: str, now: float) -> Job:
    """The HD job for a try-on; raises Failure(HD_UNSUPPORTED / HD_EXPIRED) when it can't be."""
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}")
    if not can_refine(source):
        raise Failure(FailureKind.HD_UNSUPPORTED)
    made = source.finished_at
    if source.result_url is None or made is None or made + CROP_LIFETIME - HD_MARGIN < now:
        raise Failure(FailureKind.HD_EXPIRED)
    if source.keep == "top" and source.kept_crop(now + HD_MARGIN) is None:
        raise Failure(FailureKind.HD_EXPIRED)
    return Job(
        id=new_job_id(),
        chat_id=source.chat_id,
        thread_id=source.thread_id,
        user_id=source.user_id,
        lang=source.lang,
        model=REFINER_MODEL,
        person=_unbound(source.person),
        top=_unbound(source.top) if source.top else None,
        bottom=_unbound(source.bottom) if source.bottom else None,
        request_message_id=source.result_message_id,
        kind=JobKind.REFINE,
        keep=source.keep,
        kept_url=source.kept_url,
        kept_at=source.kept_at,
        coarse_url=source.result_url,
        gender=gender,
        source_id=source.id,
    )


def _unbound(image: InputImage) -> InputImage:
    """Uploads are bound to a model: the refiner needs its own."""
    return replace(image, url=None, url_expires_at=None)
