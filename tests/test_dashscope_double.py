"""The FakeDashScope double's own contract, checked with raw HTTP (no production client)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import re
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.conftest import FakeClock
from tests.doubles.dashscope import (
    MESSAGES,
    OSS_SECRET,
    SYNC_DENIED,
    FakeDashScope,
    make_image,
)

PERSON = make_image(600, 800, "person")
GARMENT = make_image(300, 400, "garment")
SUBMIT = "/services/aigc/image2image/image-synthesis"
REPO_ROOT = Path(__file__).resolve().parents[1]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def auth(fake: FakeDashScope) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.api_key}"}


async def get_policy(
    http: aiohttp.ClientSession, fake: FakeDashScope, model: str = "aitryon-plus"
) -> tuple[int, dict[str, Any]]:
    url = fake.base_url + "/uploads"
    params = {"action": "getPolicy", "model": model}
    async with http.get(url, params=params, headers=auth(fake)) as response:
        return response.status, await response.json()


def oss_form(
    credential: dict[str, Any],
    object_key: str,
    data: bytes,
    *,
    status: str | None = "200",
    **override: str,
) -> aiohttp.FormData:
    """A PostObject form in the documented order; ``override`` replaces (or "<omit>"s) fields."""
    fields = {
        "OSSAccessKeyId": credential["oss_access_key_id"],
        "policy": credential["policy"],
        "Signature": credential["signature"],
        "key": object_key,
        "x-oss-object-acl": credential["x_oss_object_acl"],
        "x-oss-forbid-overwrite": credential["x_oss_forbid_overwrite"],
    }
    if status is not None:
        fields["success_action_status"] = status
    fields.update(override)
    form = aiohttp.FormData()
    for name, value in fields.items():
        if value != "<omit>":
            form.add_field(name, value)
    form.add_field("file", data, filename="x.jpg", content_type="image/jpeg")
    return form


async def post_object(
    http: aiohttp.ClientSession, fake: FakeDashScope, form: Any
) -> tuple[int, bytes, Any]:
    async with http.post(fake.upload_host, data=form) as response:
        return response.status, await response.read(), response.headers


def xml_code(body: bytes) -> tuple[str | None, str | None]:
    root = ET.fromstring(body)
    return root.findtext("Code"), root.findtext("Message")


async def upload(
    http: aiohttp.ClientSession, fake: FakeDashScope, data: bytes, model: str = "aitryon-plus"
) -> str:
    _, body = await get_policy(http, fake, model)
    key = f"{body['data']['upload_dir']}/{hashlib.md5(data).hexdigest()}.jpg"
    status, _, _ = await post_object(http, fake, oss_form(body["data"], key, data))
    assert status == 200
    return "oss://" + key


async def submit(
    http: aiohttp.ClientSession,
    fake: FakeDashScope,
    body: Any,
    *,
    oss: bool = True,
    path: str = SUBMIT,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    sent = {**auth(fake), "X-DashScope-Async": "enable"}
    if oss:
        sent["X-DashScope-OssResourceResolve"] = "enable"
    sent.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(fake.base_url + path, data=data, headers=sent) as response:
        return response.status, await response.json()


def tryon(person: str, top: str | None = None, bottom: str | None = None) -> dict[str, Any]:
    inputs = {"person_image_url": person, "top_garment_url": top, "bottom_garment_url": bottom}
    return {
        "model": "aitryon-plus",
        "input": {k: v for k, v in inputs.items() if v is not None},
        "parameters": {"resolution": -1, "restore_face": True},
    }


async def query(http: aiohttp.ClientSession, fake: FakeDashScope, task_id: str) -> dict[str, Any]:
    async with http.get(fake.base_url + "/tasks/" + task_id, headers=auth(fake)) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def run_task(
    http: aiohttp.ClientSession, fake: FakeDashScope, body: dict[str, Any], *, oss: bool = True
) -> dict[str, Any]:
    status, answer = await submit(http, fake, body, oss=oss)
    assert status == 200, answer
    task_id = answer["output"]["task_id"]
    await fake.wait_for(lambda: fake.tasks[task_id].status in ("SUCCEEDED", "FAILED"))
    output: dict[str, Any] = (await query(http, fake, task_id))["output"]
    return output


# -- getPolicy ---------------------------------------------------------------------------


async def test_policy_shape_and_signature(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    status, body = await get_policy(http, fake)
    assert status == 200 and set(body) == {"data", "request_id"}
    data = body["data"]
    # The recorded response: 10 fields in data (+ request_id beside it), numbers as numbers.
    assert set(data) == {
        "policy", "signature", "upload_dir", "upload_host", "expire_in_seconds",
        "max_file_size_mb", "capacity_limit_mb", "oss_access_key_id", "x_oss_object_acl",
        "x_oss_forbid_overwrite",
    }  # fmt: skip
    assert isinstance(data["expire_in_seconds"], int) and data["expire_in_seconds"] == 300
    assert isinstance(data["max_file_size_mb"], int) and isinstance(data["capacity_limit_mb"], int)
    assert data["x_oss_forbid_overwrite"] == "true" and data["x_oss_object_acl"] == "private"
    assert data["upload_host"] == fake.upload_host
    assert re.fullmatch(
        r"dashscope-instant/[0-9a-f]{32}/\d{4}-\d\d-\d\d/[0-9a-f-]{36}", data["upload_dir"]
    )

    expected = hmac.new(OSS_SECRET, data["policy"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(data["signature"]) == expected
    raw = base64.b64decode(data["policy"]).decode()
    assert "\\/" in raw  # '/' escaped, as in the recording
    document = json.loads(raw)
    assert document["conditions"] == [
        ["content-length-range", 0, data["max_file_size_mb"] * 1048576],
        ["starts-with", "$key", data["upload_dir"]],
        {"bucket": "dashscope-file-mgr"},
        {"x-oss-object-acl": "private"},
        {"x-oss-forbid-overwrite": "true"},
    ]
    assert document["expiration"].endswith("Z")


async def test_policy_auth_model_and_rate(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    url = fake.base_url + "/uploads?action=getPolicy&model=aitryon-plus"
    async with http.get(url) as response:
        assert response.status == 401
        assert (await response.json())["message"] == "No API-key provided."
    async with http.get(url, headers={"Authorization": "Bearer sk-other"}) as response:
        assert (response.status, (await response.json())["code"]) == (401, "InvalidApiKey")
    status, body = await get_policy(http, fake, "aitryon-refiner")
    assert (status, body["code"], body["message"]) == (400, "InvalidParameter", "Model not exist.")

    answers = await asyncio.gather(*(get_policy(http, fake) for _ in range(105)))
    throttled = [body for status, body in answers if status == 429]
    assert len(throttled) == 5 and fake.throttled["policy"] == 5
    assert {body["code"] for body in throttled} == {"Throttling.RateQuota"}


# -- OSS PostObject ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_field", "http_status"), [("200", 200), ("201", 201), ("204", 204), (None, 204)]
)
async def test_upload_success_statuses(
    http: aiohttp.ClientSession, fake: FakeDashScope, status_field: str | None, http_status: int
) -> None:
    _, body = await get_policy(http, fake)
    key = body["data"]["upload_dir"] + "/a.jpg"
    status, content, headers = await post_object(
        http, fake, oss_form(body["data"], key, PERSON, status=status_field)
    )
    assert status == http_status and headers["x-oss-request-id"] and headers["ETag"]
    if http_status == 201:
        assert ET.fromstring(content).findtext("Key") == key
    else:
        assert content == b""
    assert fake.uploads[key] == PERSON and fake.objects[key].model == "aitryon-plus"


async def test_upload_rejections(
    http: aiohttp.ClientSession, fake: FakeDashScope, clock: FakeClock
) -> None:
    _, body = await get_policy(http, fake)
    policy, prefix = body["data"], body["data"]["upload_dir"] + "/"

    async def attempt(form: Any) -> tuple[int, str | None, str | None, Any]:
        status, content, headers = await post_object(http, fake, form)
        return (status, *xml_code(content), headers)

    status, code, message, headers = await attempt(
        oss_form(policy, prefix + "a", PERSON, Signature="AAAA")
    )
    assert (status, code) == (403, "SignatureDoesNotMatch")
    assert headers["x-oss-ec"] == "0002-00000705" and headers["x-oss-request-id"]
    assert headers["Content-Type"].startswith("application/xml")

    status, code, message, _ = await attempt(oss_form(policy, "elsewhere/a", PERSON))
    assert (status, code) == (403, "AccessDenied")
    assert message and message.startswith("Invalid according to Policy: Policy Condition failed:")

    status, code, _, _ = await attempt(oss_form(policy, prefix + "a", PERSON, OSSAccessKeyId="x"))
    assert (status, code) == (403, "InvalidAccessKeyId")

    status, code, _, _ = await attempt(oss_form(policy, prefix + "a", PERSON, key="<omit>"))
    assert (status, code) == (400, "InvalidArgument")
    status, code, _, _ = await attempt(oss_form(policy, prefix + "a", PERSON, policy="<omit>"))
    assert (status, code) == (400, "InvalidArgument")

    late_file = aiohttp.FormData()
    late_file.add_field("file", PERSON, filename="x.jpg")
    late_file.add_field("key", prefix + "a")
    status, code, _, _ = await attempt(late_file)
    assert (status, code) == (400, "InvalidArgument")

    status, code, _, _ = await attempt({"key": prefix + "a"})  # urlencoded, not multipart
    assert (status, code) == (400, "MalformedPOSTRequest")

    clock.now += 301
    status, code, message, headers = await attempt(oss_form(policy, prefix + "a", PERSON))
    assert (status, code, message) == (
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy expired.",
    )
    assert headers["x-oss-ec"] == "0006-00000213"
    assert fake.upload_count == 0


async def test_upload_size_limit_and_overwrite(
    http: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    small = fake.issue_policy("aitryon-plus", max_bytes=10_000)
    status, content, _ = await post_object(
        http, fake, oss_form(small, small["upload_dir"] + "/big.jpg", PERSON)
    )
    assert (status, xml_code(content)[0]) == (400, "EntityTooLarge")

    _, body = await get_policy(http, fake)
    key = body["data"]["upload_dir"] + "/photo.jpg"
    first, _, _ = await post_object(http, fake, oss_form(body["data"], key, PERSON))
    second, content, _ = await post_object(http, fake, oss_form(body["data"], key, GARMENT))
    assert (first, second, xml_code(content)[0]) == (200, 409, "FileAlreadyExists")
    assert fake.uploads[key] == PERSON


# -- submit --------------------------------------------------------------------------------


async def test_submit_accepts_both_paths(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    person, top = fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT)
    for path in (SUBMIT, SUBMIT + "/"):
        status, body = await submit(http, fake, tryon(person, top), path=path, oss=False)
        assert status == 200 and set(body) == {"output", "request_id"}
        assert body["output"]["task_status"] == "PENDING"
        assert re.fullmatch(r"[0-9a-f-]{36}", body["output"]["task_id"])
    assert [record["task_id"] for record in fake.submits] == list(fake.tasks)


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "message"),
    [
        (tryon("http://x/p.jpg", "http://x/t.jpg"), {"X-DashScope-Async": "disable"}, 403,
         "AccessDenied", SYNC_DENIED),
        (tryon("http://x/p.jpg", "http://x/t.jpg"), {"Authorization": "Bearer nope"}, 401,
         "InvalidApiKey", MESSAGES["InvalidApiKey"]),
        (b"{not json", {}, 400, "BadRequest.IllegalInput", MESSAGES["BadRequest.IllegalInput"]),
        ({"input": {"person_image_url": "http://x/p.jpg"}}, {}, 400, "BadRequest.EmptyModel",
         MESSAGES["BadRequest.EmptyModel"]),
        ({**tryon("http://x/p.jpg", "http://x/t.jpg"), "model": "wanx-v1"}, {}, 400,
         "InvalidParameter", "Model not exist."),
        (tryon("", "http://x/t.jpg"), {}, 400, "InvalidParameter", MESSAGES["InvalidParameter"]),
        (tryon("http://x/p.jpg"), {}, 400, "InvalidGarment", MESSAGES["InvalidGarment"]),
    ],
)  # fmt: skip
async def test_submit_validation(
    http: aiohttp.ClientSession,
    fake: FakeDashScope,
    body: Any,
    headers: dict[str, str],
    status: int,
    code: str,
    message: str,
) -> None:
    answer_status, answer = await submit(http, fake, body, headers=headers)
    assert (answer_status, answer["code"], answer["message"]) == (status, code, message)
    assert answer["request_id"] and not fake.tasks


async def test_submit_rate_limit(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    body = tryon(fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT))
    answers = await asyncio.gather(*(submit(http, fake, body, oss=False) for _ in range(12)))
    throttled = [answer for status, answer in answers if status == 429]
    assert len(throttled) == 2 and len(fake.tasks) == 10
    assert throttled[0]["code"] == "Throttling"
    assert throttled[0]["message"] == "Requests throttling triggered."


async def test_concurrency_cap_keeps_extra_tasks_pending(
    http: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    fake.max_concurrent, fake.hold = 2, True
    body = tryon(fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT))
    ids = [(await submit(http, fake, body, oss=False))[1]["output"]["task_id"] for _ in range(4)]

    def started() -> list[str]:
        return [i for i in ids if fake.tasks[i].status != "PENDING"]

    await fake.wait_for(lambda: len(started()) == 2 and fake.queued_for_slot == 2)
    await fake.wait_for(lambda: all(fake.tasks[i].status == "RUNNING" for i in started()))
    assert started() == ids[:2]  # first come, first served
    assert [(await query(http, fake, i))["output"]["task_status"] for i in ids[2:]] == [
        "PENDING"
    ] * 2

    fake.complete(ids[0])
    await fake.wait_for(lambda: fake.tasks[ids[2]].status == "RUNNING")
    assert fake.tasks[ids[3]].status == "PENDING" and fake.max_running_seen == 2


# -- task life and bodies --------------------------------------------------------------------


async def test_succeeded_body_and_result_image(
    http: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    person, top = await upload(http, fake, PERSON), await upload(http, fake, GARMENT)
    _, answer = await submit(http, fake, tryon(person, top))
    task_id = answer["output"]["task_id"]
    await fake.wait_for(lambda: fake.tasks[task_id].status == "SUCCEEDED")
    body = await query(http, fake, task_id)
    output = body["output"]
    assert body["usage"] == {"image_count": 1} and body["request_id"]
    assert output["task_status"] == "SUCCEEDED" and output["task_id"] == task_id
    for name in ("submit_time", "scheduled_time", "end_time"):
        assert TIMESTAMP.match(output[name]), output[name]
    assert output["submit_time"] <= output["scheduled_time"] <= output["end_time"]

    async with http.get(output["image_url"]) as response:
        assert response.status == 200
        image = Image.open(io.BytesIO(await response.read()))
    assert (image.format, image.size) == ("JPEG", (600, 800))
    async with http.get(output["image_url"].replace("Signature=", "Signature=x")) as response:
        assert response.status == 403
        assert xml_code(await response.read())[0] == "SignatureDoesNotMatch"

    fake.expire_results()
    async with http.get(output["image_url"]) as response:
        code, message = xml_code(await response.read())
        assert (response.status, code, message) == (403, "AccessDenied", "Request has expired.")


async def test_statuses_walk_in_order(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    fake.pending_seconds = 0.2  # room to observe PENDING after the submit returns
    seen: list[str] = []
    body = tryon(fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT))
    _, answer = await submit(http, fake, body, oss=False)
    task = fake.tasks[answer["output"]["task_id"]]

    def record() -> bool:
        if not seen or seen[-1] != task.status:
            seen.append(task.status)
        return task.status == "SUCCEEDED"

    await fake.wait_for(record)
    assert seen == ["PENDING", "PRE-PROCESSING", "RUNNING", "POST-PROCESSING", "SUCCEEDED"]


async def test_scripted_and_manual_failures(
    http: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    body = tryon(fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT))
    fake.script_next_task("FAILED", "InvalidPerson")
    output = await run_task(http, fake, body, oss=False)
    assert (output["code"], output["message"]) == ("InvalidPerson", MESSAGES["InvalidPerson"])
    assert "image_url" not in output and "end_time" in output

    fake.hold = True
    _, answer = await submit(http, fake, body, oss=False)
    task_id = answer["output"]["task_id"]
    await fake.wait_for(lambda: fake.tasks[task_id].status == "RUNNING")
    fake.fail(task_id, "DataInspectionFailed")
    await fake.wait_for(lambda: fake.tasks[task_id].status == "FAILED")
    assert (await query(http, fake, task_id))["output"]["code"] == "DataInspectionFailed"


@pytest.mark.parametrize(
    ("person", "code"),
    [
        (make_image(100, 800, "narrow"), "InvalidInputLength"),
        (make_image(4100, 200, "wide"), "InvalidInputLength"),
        (b"\x00" * 10_000, "InvalidInputLength"),
        (make_image(160, 160, "tiny", fmt="PNG")[:4000], "InvalidInputLength"),
        (make_image(300, 300, "gif", fmt="GIF"), "InvalidURL"),
    ],
)
async def test_input_checks_fail_the_task(
    http: aiohttp.ClientSession, fake: FakeDashScope, person: bytes, code: str
) -> None:
    body = tryon(fake.add_file("p", person), fake.add_file("t.jpg", GARMENT))
    output = await run_task(http, fake, body, oss=False)
    assert (output["task_status"], output["code"], output["message"]) == (
        "FAILED",
        code,
        MESSAGES[code],
    )


async def test_oss_inputs_need_header_model_and_existence(
    http: aiohttp.ClientSession, fake: FakeDashScope, clock: FakeClock
) -> None:
    person, top = await upload(http, fake, PERSON), await upload(http, fake, GARMENT)
    other_model = await upload(http, fake, make_image(300, 300, "x"), model="aitryon")
    cases = [
        (tryon(person, top), False, "InvalidURL"),
        (tryon(person, other_model), True, "InvalidURL"),
        (tryon(person, top + "-missing"), True, "InvalidURL"),
        (tryon(person, "https://example.com/t.jpg"), True, "InvalidURL"),
        (tryon(person, top), True, None),
    ]
    for body, header, code in cases:
        output = await run_task(http, fake, body, oss=header)
        assert output.get("code") == code, (body, header)
    clock.now += 48 * 3600 + 1
    assert (await run_task(http, fake, tryon(person, top)))["code"] == "InvalidURL"


async def test_unknown_cancel_and_list(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    body = await query(http, fake, "1111")
    assert body["output"] == {"task_id": "1111", "task_status": "UNKNOWN"}

    fake.max_concurrent = 0  # nothing leaves PENDING
    request = tryon(fake.add_file("p.jpg", PERSON), fake.add_file("t.jpg", GARMENT))
    ids = [(await submit(http, fake, request, oss=False))[1]["output"]["task_id"] for _ in range(3)]
    cancel_url = fake.base_url + f"/tasks/{ids[0]}/cancel"
    async with http.post(cancel_url, headers=auth(fake)) as response:
        assert response.status == 200 and set(await response.json()) == {"request_id"}
    assert (await query(http, fake, ids[0]))["output"]["task_status"] == "CANCELED"
    async with http.post(cancel_url, headers=auth(fake)) as response:
        answer = await response.json()
        assert (response.status, answer["code"]) == (400, "UnsupportedOperation")
        assert answer["message"] == MESSAGES["UnsupportedOperation"]

    params = {"page_no": "1", "page_size": "2", "status": "PENDING"}
    async with http.get(fake.base_url + "/tasks", params=params, headers=auth(fake)) as response:
        listing = await response.json()
    assert (listing["total"], listing["total_page"], listing["page_size"]) == (2, 1, 2)
    assert {entry["task_id"] for entry in listing["data"]} == set(ids[1:])
    assert all(isinstance(entry["gmt_create"], int) for entry in listing["data"])

    fake.forget(ids[1])
    assert (await query(http, fake, ids[1]))["output"]["task_status"] == "UNKNOWN"


async def test_query_rate_limit(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    url = fake.base_url + "/tasks/abc"

    async def status() -> tuple[int, dict[str, Any]]:
        async with http.get(url, headers=auth(fake)) as response:
            return response.status, await response.json()

    answers = await asyncio.gather(*(status() for _ in range(23)))
    throttled = [body for code, body in answers if code == 429]
    assert len(throttled) == 3 and throttled[0]["code"] == "Throttling"
    assert fake.max_queries_in_window() == 23 and len(fake.query_times) == 23


# -- scripting helpers ---------------------------------------------------------------------


async def test_fault_shapes(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    fake.fail_next("query", 503, retry_after=2)
    async with http.get(fake.base_url + "/tasks/a", headers=auth(fake)) as response:
        body = await response.json()
        assert (response.status, body["code"], response.headers["Retry-After"]) == (
            503,
            "ModelUnavailable",
            "2",
        )
    fake.fail_next("policy", 429)
    assert (await get_policy(http, fake))[1]["code"] == "Throttling.RateQuota"
    fake.fail_next("submit", 502)
    async with http.post(fake.base_url + SUBMIT, headers=auth(fake)) as response:
        assert response.status == 502 and "upstream" in await response.text()
    fake.fail_next("upload", 503)
    status, content, headers = await post_object(http, fake, {"a": "b"})
    assert (status, xml_code(content)[0]) == (503, "ServiceUnavailable") and headers["x-oss-ec"]
    with pytest.raises(ValueError):
        fake.fail_next("nope", 500)  # type: ignore[arg-type]


async def test_drop_and_delay(http: aiohttp.ClientSession, fake: FakeDashScope) -> None:
    fake.drop_next("cancel")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(fake.base_url + "/tasks/a/cancel", headers=auth(fake)):
            pass
    assert fake.cancels == ["a"]

    fake.delay_next("query", 5.0)
    with pytest.raises(TimeoutError):
        async with http.get(
            fake.base_url + "/tasks/a", headers=auth(fake), timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass
    assert fake.requests["query"] == 1


async def test_runs_as_a_module() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.doubles.dashscope", "--port", "0",
        stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        base_url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", base_url)
        origin = base_url.removesuffix("/api/v1")
        async with aiohttp.ClientSession() as http, http.get(origin + "/_double/stats") as response:
            assert (await response.json())["submits"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
