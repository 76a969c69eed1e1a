"""Issue 12's pure parts: what an album means, the collage, batches in the scheduler and
quota for several try-ons at once."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from handlers.album_plan import plan_album, role_of
from services.images.collage import collage
from services.tryon.scheduler import QueueFull, SchedulerLimits, TryOnScheduler
from tests.harness import jpeg

# ---- album roles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "role"),
    [
        ("me", "person"),
        ("ME", "person"),
        ("Person", "person"),
        ("我", "person"),
        ("人", "person"),
        ("top", "top"),
        ("Top: the blue one", "top"),
        ("上衣", "top"),
        ("上装", "top"),
        ("bottom", "bottom"),
        ("下装", "bottom"),
        ("裤子", "bottom"),
        ("裙子", "bottom"),
        ("Dress", "dress"),
        ("连衣裙", "dress"),
        ("这是上衣", "top"),
        ("nice!", None),
        (None, None),
    ],
)
def test_captions_name_roles(caption: str | None, role: str | None) -> None:
    assert role_of(caption) == role


def test_uncaptioned_albums_follow_the_order() -> None:
    plan = plan_album("person", [None, None])
    assert (plan.kind, plan.person, plan.top, plan.bottom, plan.guessed) == (
        "fill", 0, 1, None, True,
    )  # fmt: skip
    plan = plan_album("person", [None, None, None])
    assert (plan.person, plan.top, plan.bottom) == (0, 1, 2)
    plan = plan_album("top", [None, None])
    assert (plan.kind, plan.person, plan.top, plan.bottom) == ("fill", None, 0, 1)


def test_captions_override_the_order() -> None:
    plan = plan_album("person", ["bottom", "me", "top"])
    assert (plan.person, plan.top, plan.bottom, plan.guessed) == (1, 2, 0, False)
    plan = plan_album("person", ["dress", "我"])
    assert (plan.person, plan.top, plan.dress) == (1, 0, True)
    plan = plan_album("person", [None, "top"])  # the uncaptioned one is the person
    assert (plan.person, plan.top) == (0, 1)


def test_several_garments_for_one_slot_make_a_batch() -> None:
    plan = plan_album("top", [None, None, None])
    assert (plan.kind, plan.garments, plan.batch_slot) == ("batch", [0, 1, 2], "top")
    plan = plan_album("person", [None, None, None, None, None])
    assert (plan.kind, plan.person, plan.garments) == ("batch", 0, [1, 2, 3, 4])
    plan = plan_album("bottom", [None, None])
    assert (plan.kind, plan.garments, plan.batch_slot) == ("batch", [0, 1], "bottom")
    plan = plan_album("top", ["top", "top", "bottom"])
    assert (plan.kind, plan.garments, plan.bottom) == ("batch", [0, 1], 2)


def test_albums_that_cannot_be_used_say_so() -> None:
    assert plan_album("person", [None] * 7).kind == "too_many"
    assert plan_album("person", ["me", "me", "top"]).kind == "several_people"
    assert plan_album("person", ["top", "bottom"]).kind == "no_person"
    assert plan_album("top", ["top", "top", "bottom", "bottom"]).kind == "too_many"


# ---- collage -----------------------------------------------------------------------------


def test_collage_keeps_every_picture_whole_at_one_height() -> None:
    tall, wide = jpeg(400, 800, seed=1), jpeg(900, 600, seed=2)
    out = Image.open(io.BytesIO(collage([tall, wide, tall])))
    assert out.format == "JPEG"
    height = out.height - 2 * 12
    assert height == 600  # the smallest height; nothing is cropped, only scaled
    assert out.width == 300 + 900 + 300 + 4 * 12  # widths keep each aspect ratio


def test_collage_takes_two_to_four() -> None:
    with pytest.raises(ValueError):
        collage([jpeg(seed=1)])
    with pytest.raises(ValueError):
        collage([jpeg(seed=1)] * 5)


# ---- batches in the scheduler ------------------------------------------------------------


async def _enter(
    sched: TryOnScheduler, job_id: str, gate: asyncio.Event, started: list[str]
) -> None:
    async with sched.slot(job_id):
        started.append(job_id)
        await gate.wait()


async def test_a_batch_is_one_request_and_takes_one_slot_while_others_wait() -> None:
    sched = TryOnScheduler(SchedulerLimits(max_concurrent=2))
    for n in range(4):
        sched.reserve(f"b{n}", 1, batch="B")  # four try-ons, one request
    assert sched.requests_of(1) == 1 and sched.has_room(1)
    sched.reserve("solo", 1)  # the user's second request fills the allowance
    with pytest.raises(QueueFull):
        sched.reserve("third", 1)
    sched.reserve("other", 2)
    gates = {j: asyncio.Event() for j in ["b0", "b1", "b2", "b3", "solo", "other"]}
    started: list[str] = []
    tasks = [asyncio.create_task(_enter(sched, j, g, started)) for j, g in gates.items()]
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == ["b0", "other"]  # the batch does not take the second slot
    gates["other"].set()
    for _ in range(10):
        await asyncio.sleep(0)
    # Nobody else is waiting now: the batch may use the free slot.
    assert started == ["b0", "other", "b1"]
    for gate in gates.values():
        gate.set()
    await asyncio.gather(*tasks)
    assert sorted(started) == sorted(gates) and sched.requests_of(1) == 0
