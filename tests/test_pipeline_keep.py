"""The pipeline's keep-mine step and the HD (refine) job, against the DashScope double:
the parsing step stores its outcome on the job (a restart does not parse again), a
refine job takes the same steps with the refiner's uploads and body, and a refiner the
account lacks hides HD."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from services.dashscope.client import PARSING_MODEL, REFINER_MODEL
from services.model import FailureKind, JobKind, JobState
from services.tryon.failures import Failure
from services.tryon.hd import can_refine, refine_job
from tests.test_pipeline import Rig, make_rig

__all__ = ["make_rig"]


async def test_a_kept_top_is_parsed_and_its_crop_submitted(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    rig.ds.enable_models(PARSING_MODEL)
    job = rig.job(top=None, keep="top", bottom=rig.job().top)
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and ended.refinable
    assert ended.kept_url is not None and ended.kept_at is not None and not ended.kept_missing
    inputs = rig.ds.submits[0]["body"]["input"]
    assert inputs["top_garment_url"] == ended.kept_url
    assert rig.ds.parsing_calls[0]["body"]["parameters"]["clothes_type"] == ["upper"]


async def test_a_parsed_job_is_not_parsed_again_after_a_restart(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    rig.ds.enable_models(PARSING_MODEL)
    job = rig.job(bottom=None, keep="bottom")
    job = replace(job, kept_url=None, kept_at=time.time())  # parsed before: none found
    await rig.store.create(job)
    restarted: Rig = await make_rig()
    restarted.files.files.update(rig.files.files)
    assert await restarted.runner.resume() == 1
    ended = await restarted.ended(job.id)
    assert ended.state is JobState.DELIVERED and ended.kept_missing
    assert rig.ds.parsing_calls == []
    assert "bottom_garment_url" not in rig.ds.submits[0]["body"]["input"]


async def test_no_garment_to_keep_leaves_the_slot_to_the_model(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    rig.ds.enable_models(PARSING_MODEL)
    rig.ds.default_garments = frozenset({"upper"})
    job = rig.job(bottom=None, keep="bottom")
    await rig.runner.launch(job)
    ended = await rig.ended(job.id)
    assert ended.state is JobState.DELIVERED and ended.kept_missing
    assert set(rig.ds.submits[0]["body"]["input"]) == {"person_image_url", "top_garment_url"}


async def test_a_refine_job_takes_the_same_steps_with_the_refiner(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    rig.ds.enable_models(REFINER_MODEL)
    job = rig.job()
    await rig.runner.launch(job)
    source = await rig.ended(job.id)
    assert can_refine(source)
    refine = refine_job(source, "man", time.time())
    await rig.runner.launch(refine)
    ended = await rig.ended(refine.id)
    assert ended.state is JobState.DELIVERED and ended.kind is JobKind.REFINE
    assert ended.request_message_id == source.result_message_id
    body = rig.ds.submits[1]["body"]
    assert body["model"] == REFINER_MODEL and body["parameters"] == {"gender": "man"}
    assert body["input"]["coarse_image_url"] == source.result_url
    uploaded = {stored.model for stored in rig.ds.objects.values()}
    assert uploaded == {"aitryon-plus", REFINER_MODEL}


async def test_a_refused_refiner_hides_hd(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig()
    job = rig.job()
    await rig.runner.launch(job)
    source = await rig.ended(job.id)
    refine = refine_job(source, "woman", time.time())
    await rig.runner.launch(refine)
    ended = await rig.ended(refine.id)
    assert ended.state is JobState.FAILED
    assert ended.failure is FailureKind.SERVICE_UNAVAILABLE
    assert rig.runner.features.hd is False


async def test_hd_is_refused_for_expired_or_unsuitable_results(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig()
    now = time.time()
    done = replace(
        rig.job(), state=JobState.DELIVERED, result_url="http://r", finished_at=now, refinable=True
    )
    assert refine_job(done, "woman", now).coarse_url == "http://r"
    with pytest.raises(Failure) as expired:
        refine_job(replace(done, finished_at=now - 24 * 3600), "woman", now)
    assert expired.value.kind is FailureKind.HD_EXPIRED
    with pytest.raises(Failure) as low_res:
        refine_job(replace(done, refinable=False), "woman", now)
    assert low_res.value.kind is FailureKind.HD_UNSUPPORTED
    with pytest.raises(Failure) as no_top:
        refine_job(replace(done, top=None, bottom=done.top), "woman", now)
    assert no_top.value.kind is FailureKind.HD_UNSUPPORTED
