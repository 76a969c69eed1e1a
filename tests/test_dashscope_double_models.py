"""Contract tests of the DashScope double: the parsing model, the refiner, the task list,
the fault helpers and the counters (dashscope-api.md §4–§7)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.conftest import FakeClock
from tests.doubles.dashscope import (
    ASYNC_DENIED,
    GATEWAY_BODY,
    MESSAGES,
    PARSING_MODEL,
    PARSING_PATH,
    REFINER_MODEL,
    SIZE_MISMATCH,
    UNABLE_TO_DOWNLOAD,
    URL_ERROR,
    FakeDashScope,
    make_image,
)
from tests.doubles.dashscope.wire import BEIJING
from tests.test_dashscope_double import (
    GARMENT,
    PERSON,
    auth,
    query,
    run_task,
    submit,
    tryon,
    upload,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def models(fake: FakeDashScope) -> FakeDashScope:
    """The conftest double with the refiner and the parsing model on the account."""
    fake.enable_models(REFINER_MODEL, PARSING_MODEL)
    return fake


async def parse(
    http: aiohttp.ClientSession,
    fake: FakeDashScope,
    image_url: str,
    clothes_type: Any = ("upper", "lower"),
    *,
    model: str = PARSING_MODEL,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    body = {
        "model": model,
        "input": {"image_url": image_url},
        "parameters": {"clothes_type": list(clothes_type)},
    }
    sent = {**auth(fake), "X-DashScope-OssResourceResolve": "enable", **(headers or {})}
    async with http.post(fake.base_url + PARSING_PATH, json=body, headers=sent) as response:
        return response.status, await response.json()


async def download(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:
        return response.status, await response.read()


def refine(person: str, top: str, coarse: str, gender: Any = "woman") -> dict[str, Any]:
    return {
        "model": REFINER_MODEL,
        "input": {"person_image_url": person, "top_garment_url": top, "coarse_image_url": coarse},
        "parameters": {"gender": gender},
    }


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def beijing(ts: float) -> str:
    return datetime.fromtimestamp(ts, BEIJING).strftime("%Y%m%d%H%M%S")


# -- parsing -------------------------------------------------------------------------------


async def test_parsing_answers_arrays_in_clothes_type_order(
    http: aiohttp.ClientSession, models: FakeDashScope
) -> None:
    person = await upload(http, models, PERSON, PARSING_MODEL)
    status, body = await parse(http, models, person, ["upper", "lower"])
    assert status == 200, body
    assert set(body) == {"output", "usage", "request_id"}
    assert body["usage"] == {"image_count": 1}
    output = body["output"]
    assert set(output) == {"parsing_img_url", "crop_img_url", "bbox"}
    assert all(len(values) == 2 for values in output.values())
    (x1, y1, x2, y2), lower = output["bbox"]
    assert 0 <= x1 < x2 <= 600 and 0 <= y1 < y2 <= 800 and lower[1] > y1  # top first

    status, crop = await download(http, output["crop_img_url"][0])
    assert status == 200 and crop.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(crop)) as image:
        assert image.mode == "RGB" and image.size == (x2 - x1, y2 - y1)
    status, cutout = await download(http, output["parsing_img_url"][0])
    with Image.open(io.BytesIO(cutout)) as image:
        assert image.mode == "RGBA" and image.size == (600, 800)
    assert models.requests["parsing"] == 1 and len(models.parsing_calls) == 1
    assert models.parsing_calls[0]["status"] == 200 and models.submits == []


async def test_parsing_answers_null_for_garments_the_person_does_not_wear(
    http: aiohttp.ClientSession, models: FakeDashScope
) -> None:
    models.person_has(PERSON, "dress")
    url = models.add_file("dress.jpg", PERSON)
    _, body = await parse(http, models, url, ["upper", "lower"])
    assert body["output"] == {
        "parsing_img_url": [None, None], "crop_img_url": [None, None], "bbox": [None, None],
    }  # fmt: skip
    _, body = await parse(http, models, url, ["dress"])
    assert body["output"]["bbox"][0] is not None

    models.person_has(PERSON, "upper")
    _, body = await parse(http, models, url, ["upper", "lower"])
    assert body["output"]["crop_img_url"][0] is not None
    assert body["output"]["crop_img_url"][1] is None and body["output"]["bbox"][1] is None


async def test_parsing_crop_is_a_garment_try_on_accepts(
    http: aiohttp.ClientSession, models: FakeDashScope
) -> None:
    _, body = await parse(http, models, models.add_file("p.jpg", PERSON), ["upper"])
    crop_url = body["output"]["crop_img_url"][0]
    output = await run_task(
        http, models, tryon(models.add_file("p2.jpg", PERSON), bottom=crop_url), oss=False
    )
    assert output["task_status"] == "SUCCEEDED", output


@pytest.mark.parametrize(
    ("change", "status", "code", "message"),
    [
        ({"clothes_type": ["hat"]}, 400, "InvalidParameter.ClothesType",
         MESSAGES["InvalidParameter.ClothesType"]),
        ({"clothes_type": ["lower", "upper"]}, 400, "InvalidParameter.ClothesType", None),
        ({"model": "aitryon-plus"}, 400, "InvalidParameter", URL_ERROR),
        ({"model": "wanx-v1"}, 400, "InvalidParameter", "Model not exist."),
        ({"image_url": ""}, 400, "InvalidParameter", MESSAGES["InvalidParameter"]),
        ({"headers": {"X-DashScope-Async": "enable"}}, 403, "AccessDenied", ASYNC_DENIED),
        ({"headers": {"Authorization": "Bearer nope"}}, 401, "InvalidApiKey", None),
    ],
)  # fmt: skip
async def test_parsing_request_errors(
    http: aiohttp.ClientSession,
    models: FakeDashScope,
    change: dict[str, Any],
    status: int,
    code: str,
    message: str | None,
) -> None:
    url = change.get("image_url", models.add_file("p.jpg", PERSON))
    got, body = await parse(
        http,
        models,
        url,
        change.get("clothes_type", ["upper"]),
        model=change.get("model", PARSING_MODEL),
        headers=change.get("headers"),
    )
    assert (got, body["code"]) == (status, code)
    assert set(body) == {"code", "message", "request_id"}
    if message is not None:
        assert body["message"] == message


async def test_parsing_input_must_be_uploaded_for_the_parsing_model(
    http: aiohttp.ClientSession, models: FakeDashScope
) -> None:
    for_tryon = await upload(http, models, PERSON, "aitryon-plus")
    status, body = await parse(http, models, for_tryon)
    assert (status, body["code"]) == (400, "InvalidURL")

    for_parsing = await upload(http, models, PERSON, PARSING_MODEL)
    no_header = {"X-DashScope-OssResourceResolve": "disable"}
    status, body = await parse(http, models, for_parsing, headers=no_header)
    assert (status, body["code"]) == (400, "InvalidURL")
    status, body = await parse(http, models, for_parsing)
    assert status == 200

    small = models.add_file("small.jpg", make_image(100, 100, "small"))
    status, body = await parse(http, models, small)
    assert (status, body["code"]) == (400, "InvalidInputLength")


async def test_parsing_faults(http: aiohttp.ClientSession, models: FakeDashScope) -> None:
    url = models.add_file("p.jpg", PERSON)
    models.fail_next("parsing", 500)
    status, body = await parse(http, models, url)
    assert (status, body["code"], body["message"]) == (
        500, "InternalError", MESSAGES["InternalError"],
    )  # fmt: skip
    models.fail_next("parsing", 400, "InvalidParameter")
    status, body = await parse(http, models, url)
    assert (status, body["code"]) == (400, "InvalidParameter")
    assert [record["status"] for record in models.parsing_calls] == [500, 400]

    answers = await asyncio.gather(*(parse(http, models, url, ["dress"]) for _ in range(12)))
    assert sorted(status for status, _ in answers).count(429) == 2  # 10 RPS
    assert models.throttled["parsing"] == 2


# -- refiner -------------------------------------------------------------------------------


async def tried_on(http: aiohttp.ClientSession, fake: FakeDashScope, resolution: int = -1) -> str:
    person = await upload(http, fake, PERSON)
    top = await upload(http, fake, GARMENT)
    body = tryon(person, top)
    body["parameters"]["resolution"] = resolution
    output = await run_task(http, fake, body)
    assert output["task_status"] == "SUCCEEDED", output
    url: str = output["image_url"]
    return url


async def test_refiner_makes_a_bigger_image_of_the_coarse_one(
    http: aiohttp.ClientSession, models: FakeDashScope
) -> None:
    coarse = await tried_on(http, models)
    person = await upload(http, models, PERSON, REFINER_MODEL)
    top = await upload(http, models, GARMENT, REFINER_MODEL)
    output = await run_task(http, models, refine(person, top, coarse, "man"))
    assert output["task_status"] == "SUCCEEDED", output
    status, image = await download(http, output["image_url"])
    assert status == 200 and size_of(image) == (1200, 1600)  # the person is 600×800
    assert models.submits_per_model() == {"aitryon-plus": 1, REFINER_MODEL: 1}
    assert models.tasks_created == {"aitryon-plus": 1, REFINER_MODEL: 1}


@pytest.mark.parametrize(
    "change",
    [
        {"parameters": {"gender": "other"}},
        {"parameters": {}},
        {"input": {"person_image_url": "http://x/p.jpg", "top_garment_url": "http://x/t.jpg"}},
        {"input": {"person_image_url": "http://x/p.jpg", "coarse_image_url": "http://x/c.jpg"}},
    ],
)
async def test_refiner_validation(
    http: aiohttp.ClientSession, models: FakeDashScope, change: dict[str, Any]
) -> None:
    body = {**refine("http://x/p.jpg", "http://x/t.jpg", "http://x/c.jpg"), **change}
    status, answer = await submit(http, models, body)
    assert (status, answer["code"]) == (400, "InvalidParameter")
    assert models.tasks_created == {}


async def test_refiner_rejects_inputs_that_do_not_belong(
    http: aiohttp.ClientSession, models: FakeDashScope
) -> None:
    person = await upload(http, models, PERSON, REFINER_MODEL)
    top = await upload(http, models, GARMENT, REFINER_MODEL)

    not_a_result = models.add_file("c.jpg", PERSON)
    output = await run_task(http, models, refine(person, top, not_a_result))
    assert (output["task_status"], output["code"]) == ("FAILED", "InvalidURL")

    resized = await tried_on(http, models, resolution=1024)  # 576×1024, not 600×800
    output = await run_task(http, models, refine(person, top, resized))
    assert (output["task_status"], output["code"]) == ("FAILED", "InvalidParameter")
    assert output["message"] == SIZE_MISMATCH

    coarse = await tried_on(http, models)
    tryon_person = await upload(http, models, PERSON, "aitryon-plus")
    output = await run_task(http, models, refine(tryon_person, top, coarse))
    assert (output["task_status"], output["code"]) == ("FAILED", "InvalidURL")


async def test_refiner_shares_the_five_task_slots(
    http: aiohttp.ClientSession, models: FakeDashScope
) -> None:
    coarse = await tried_on(http, models)
    person = await upload(http, models, PERSON, REFINER_MODEL)
    top = await upload(http, models, GARMENT, REFINER_MODEL)
    models.hold_tasks()
    request = tryon(models.add_file("p.jpg", PERSON), models.add_file("t.jpg", GARMENT))
    held = [(await submit(http, models, request, oss=False))[1]["output"]["task_id"]]
    for _ in range(4):
        held.append((await submit(http, models, request, oss=False))[1]["output"]["task_id"])
    _, answer = await submit(http, models, refine(person, top, coarse))
    refiner = answer["output"]["task_id"]
    await models.wait_for(lambda: models.queued_for_slot == 1)
    assert models.tasks[refiner].status == "PENDING"
    models.complete(held[0])
    await models.wait_for(lambda: models.tasks[refiner].status != "PENDING")
    assert models.max_running_seen == 5


# -- task list -----------------------------------------------------------------------------


async def list_tasks(
    http: aiohttp.ClientSession, fake: FakeDashScope, **params: str
) -> tuple[int, dict[str, Any]]:
    async with http.get(fake.base_url + "/tasks", params=params, headers=auth(fake)) as response:
        return response.status, await response.json()


async def test_task_list_filters_by_time_window_model_and_status(
    http: aiohttp.ClientSession, models: FakeDashScope, clock: FakeClock
) -> None:
    models.max_concurrent = 0  # everything stays PENDING
    request = tryon(models.add_file("p.jpg", PERSON), models.add_file("t.jpg", GARMENT))
    start = clock.now
    early = (await submit(http, models, request, oss=False))[1]["output"]["task_id"]
    clock.now += 3600
    later = (await submit(http, models, request, oss=False))[1]["output"]["task_id"]
    refiner = refine("http://x/p.jpg", "http://x/t.jpg", "http://x/c.jpg")
    clock.now += 1
    refined = (await submit(http, models, refiner, oss=False))[1]["output"]["task_id"]
    clock.now += 60

    status, listing = await list_tasks(http, models)
    assert status == 200
    assert set(listing) == {"total", "data", "total_page", "page_no", "request_id", "page_size"}
    assert [entry["task_id"] for entry in listing["data"]] == [
        refined,
        later,
        early,
    ]  # newest first
    entry = listing["data"][-1]
    assert set(entry) == {
        "api_key_id", "caller_parent_id", "caller_uid", "end_time", "gmt_create", "model_name",
        "region", "request_id", "start_time", "status", "task_id", "user_api_unique_key",
    }  # fmt: skip
    assert entry["gmt_create"] == int(start * 1000) and entry["end_time"] is None
    assert (entry["model_name"], entry["status"], entry["region"]) == (
        "aitryon-plus", "PENDING", "cn-beijing",
    )  # fmt: skip

    _, listing = await list_tasks(http, models, model_name=REFINER_MODEL)
    assert [e["task_id"] for e in listing["data"]] == [refined]
    window = {"start_time": beijing(start + 1800), "end_time": beijing(start + 7200)}
    _, listing = await list_tasks(http, models, **window)
    assert {e["task_id"] for e in listing["data"]} == {later, refined}
    _, listing = await list_tasks(http, models, end_time=beijing(start + 1))
    assert [e["task_id"] for e in listing["data"]] == [early]
    _, listing = await list_tasks(
        http, models, model_name="aitryon-plus", page_size="1", page_no="2"
    )
    assert (listing["total"], listing["total_page"], listing["page_no"]) == (2, 2, 2)
    assert [e["task_id"] for e in listing["data"]] == [early]
    _, listing = await list_tasks(http, models, status="SUCCEEDED")
    assert (listing["total"], listing["data"], listing["total_page"]) == (0, [], 0)

    too_long = {"start_time": beijing(start - 2 * 86400), "end_time": beijing(start)}
    for bad in (too_long, {"page_size": "0"}, {"start_time": "2025-01-01"}):
        status, answer = await list_tasks(http, models, **bad)
        assert (status, answer["code"]) == (400, "InvalidParameter")
    assert models.list_calls == 9


# -- fault helpers -------------------------------------------------------------------------


async def test_submit_that_creates_the_task_then_fails(
    http: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    request = tryon(fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT))
    fake.submit_then_fail(502)
    sent = {**auth(fake), "X-DashScope-Async": "enable"}
    url = fake.base_url + "/services/aigc/image2image/image-synthesis"
    async with http.post(url, json=request, headers=sent) as response:
        assert response.status == 502 and await response.text() == GATEWAY_BODY
    fake.submit_then_fail(504)
    async with http.post(url, json=request, headers=sent) as response:
        assert response.status == 504
    fake.drop_next("submit")
    with pytest.raises(aiohttp.ClientError):
        async with http.post(url, json=request, headers=sent) as response:
            await response.read()
    await fake.wait_for(lambda: len(fake.tasks) == 3)
    assert fake.tasks_created == {"aitryon-plus": 3}
    assert [record["status"] for record in fake.submits[:2]] == [502, 504]
    assert all(record["task_id"] in fake.tasks for record in fake.submits)
    _, listing = await list_tasks(http, fake)
    assert listing["total"] == 3  # what a client reconciles against


async def test_outages_at_submit(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    request = tryon(fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT))
    fake.fail_for("submit", 0.3)
    for _ in range(2):
        status, body = await submit(http, fake, request, oss=False)
        assert (status, body["code"], body["message"]) == (
            503, "ModelUnavailable", MESSAGES["ModelUnavailable"],
        )  # fmt: skip
    await asyncio.sleep(0.35)
    status, body = await submit(http, fake, request, oss=False)
    assert status == 200

    fake.fail_for("submit", 0.3, 429, "Throttling.AllocationQuota", retry_after=1)
    sent = {**auth(fake), "X-DashScope-Async": "enable"}
    url = fake.base_url + "/services/aigc/image2image/image-synthesis"
    async with http.post(url, json=request, headers=sent) as response:
        body = await response.json()
        assert (response.status, response.headers["Retry-After"]) == (429, "1")
    assert (body["code"], body["message"]) == (
        "Throttling.AllocationQuota", MESSAGES["Throttling.AllocationQuota"],
    )  # fmt: skip
    assert fake.tasks_created == {"aitryon-plus": 1}
    assert fake.submits_per_model() == {"aitryon-plus": 4}


async def test_inputs_that_cannot_be_downloaded(
    http: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    top = fake.add_file("t.jpg", GARMENT)
    output = await run_task(http, fake, tryon(fake.undownloadable_url("gone.jpg"), top))
    assert (output["task_status"], output["code"], output["message"]) == (
        "FAILED", "InvalidParameter.DataInspection", UNABLE_TO_DOWNLOAD,
    )  # fmt: skip
    assert UNABLE_TO_DOWNLOAD.startswith("Unable to download")
    url = fake.undownloadable_url("gone2.jpg", code="InvalidURL")
    output = await run_task(http, fake, tryon(url, top))
    assert (output["code"], output["message"]) == ("InvalidURL", MESSAGES["InvalidURL"])
    status, _ = await download(http, url)
    assert status == 404

    person = await upload(http, fake, PERSON)
    fake.vanish(person)
    output = await run_task(http, fake, tryon(person, top))
    assert (output["task_status"], output["code"]) == ("FAILED", "InvalidURL")
    person = await upload(http, fake, make_image(600, 800, "other"))
    fake.expire_uploads()
    output = await run_task(http, fake, tryon(person, top))
    assert output["code"] == "InvalidURL"


async def test_counters_in_stats(http: aiohttp.ClientSession, models: FakeDashScope) -> None:
    request = tryon(models.add_file("p.jpg", PERSON), models.add_file("t.jpg", GARMENT))
    await run_task(http, models, request, oss=False)
    await parse(http, models, models.add_file("p.jpg", PERSON))
    await list_tasks(http, models)
    task_id = next(iter(models.tasks))
    await query(http, models, task_id)
    async with http.get(models.origin + "/_double/stats") as response:
        stats = json.loads(await response.text())
    assert stats["submits_per_model"] == {"aitryon-plus": 1}
    assert stats["tasks_created"] == {"aitryon-plus": 1}
    assert (stats["parsing_calls"], stats["list_calls"]) == (1, 1)
