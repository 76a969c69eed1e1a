"""DashScopeClient against the FakeDashScope double: happy path, retries, ambiguity, errors."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from PIL import Image

from services.dashscope import (
    DashScopeClient,
    DashScopeError,
    ErrorKind,
    SubmitOutcomeUnknown,
    TaskState,
    UploadPolicy,
    classify,
)
from services.dashscope.ratelimit import SlidingWindowLimiter
from services.retry import RetryPolicy
from tests.conftest import FakeClock
from tests.doubles.dashscope import SYNC_DENIED, FakeDashScope, make_image

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
PERSON = make_image(600, 800, "person")
GARMENT = make_image(400, 400, "garment", fmt="PNG")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def make_client(
    session: aiohttp.ClientSession, fake: FakeDashScope, **overrides: Any
) -> DashScopeClient:
    options: dict[str, Any] = {
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "model": "aitryon-plus",
        "retry": FAST_RETRY,
        "request_timeout": 2.0,
        **overrides,
    }
    return DashScopeClient(session, **options)


@pytest.fixture
def client(session: aiohttp.ClientSession, fake: FakeDashScope) -> DashScopeClient:
    return make_client(session, fake)


async def upload_pair(client: DashScopeClient) -> tuple[str, str]:
    policy = await client.get_upload_policy()
    return (
        await client.upload(policy, PERSON, "person.jpg"),
        await client.upload(policy, GARMENT, "top.png"),
    )


async def finished(client: DashScopeClient, fake: FakeDashScope, task_id: str) -> TaskState:
    await fake.wait_for(lambda: fake.tasks[task_id].status in TaskState.TERMINAL)
    return await client.query(task_id)


async def succeeded_task(client: DashScopeClient, fake: FakeDashScope) -> TaskState:
    person, top = await upload_pair(client)
    task = await client.submit(person, top, None)
    state = await finished(client, fake, task.task_id)
    assert state.status == "SUCCEEDED", state
    return state


async def pending_task(client: DashScopeClient, fake: FakeDashScope) -> TaskState:
    """A task that stays PENDING: no concurrency slot will ever free up."""
    fake.max_concurrent = 0
    return await client.submit(
        fake.add_file("p.jpg", PERSON), fake.add_file("t.png", GARMENT), None
    )


# -- happy path --------------------------------------------------------------------------


async def test_upload_submit_poll_download(client: DashScopeClient, fake: FakeDashScope) -> None:
    person, top = await upload_pair(client)
    task = await client.submit(person, top, None)
    assert task.status == "PENDING" and task.request_id

    state = await finished(client, fake, task.task_id)
    assert state.is_terminal and state.error() is None
    assert state.image_url and "Expires=" in state.image_url
    image = Image.open(io.BytesIO(await client.download_result(state.image_url)))
    assert (image.format, image.size) == ("JPEG", (600, 800))

    (record,) = fake.submits
    assert record["headers"]["X-DashScope-Async"] == "enable"
    assert record["headers"]["X-DashScope-OssResourceResolve"] == "enable"
    assert record["body"] == {
        "model": "aitryon-plus",
        "input": {"person_image_url": person, "top_garment_url": top},
        "parameters": {"resolution": -1, "restore_face": True},
    }


async def test_results_differ_per_task(client: DashScopeClient, fake: FakeDashScope) -> None:
    first = await succeeded_task(client, fake)
    second = await succeeded_task(client, fake)
    assert first.image_url and second.image_url
    assert await client.download_result(first.image_url) != await client.download_result(
        second.image_url
    )


async def test_http_inputs_skip_the_oss_header(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    task = await client.submit(
        fake.add_file("p.jpg", PERSON), None, fake.add_file("b.png", GARMENT)
    )
    assert "X-DashScope-OssResourceResolve" not in fake.submits[0]["headers"]
    assert (await finished(client, fake, task.task_id)).status == "SUCCEEDED"


async def test_one_policy_serves_many_uploads_with_unique_keys(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    policy = await client.get_upload_policy()
    assert policy.valid_for(30) and not policy.valid_for(400)
    urls = [await client.upload(policy, PERSON, "photo.jpg") for _ in range(5)]

    assert fake.policy_calls == 1
    assert fake.upload_count == fake.requests["upload"] == 5  # no 409, no retry
    keys = [url.removeprefix("oss://") for url in urls]
    assert len(set(keys)) == 5
    assert all(k.startswith(policy.upload_dir + "/") and k.endswith(".jpg") for k in keys)
    assert all(fake.uploads[k] == PERSON for k in keys)


async def test_missing_garment_is_refused_locally(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    with pytest.raises(DashScopeError) as caught:
        await client.submit("oss://x/person.jpg", None, None)
    assert caught.value.kind is ErrorKind.INVALID_GARMENT
    assert fake.requests["submit"] == 0


# -- retryable faults are recovered ------------------------------------------------------

Operation = Callable[[DashScopeClient, FakeDashScope], Awaitable[Any]]


async def _op_policy(client: DashScopeClient, fake: FakeDashScope) -> Callable[[], Awaitable[Any]]:
    return client.get_upload_policy


async def _op_upload(client: DashScopeClient, fake: FakeDashScope) -> Callable[[], Awaitable[Any]]:
    policy = await client.get_upload_policy()
    return lambda: client.upload(policy, PERSON, "p.jpg")


async def _op_submit(client: DashScopeClient, fake: FakeDashScope) -> Callable[[], Awaitable[Any]]:
    person, top = await upload_pair(client)
    return lambda: client.submit(person, top, None)


async def _op_query(client: DashScopeClient, fake: FakeDashScope) -> Callable[[], Awaitable[Any]]:
    task = await pending_task(client, fake)
    return lambda: client.query(task.task_id)


async def _op_cancel(client: DashScopeClient, fake: FakeDashScope) -> Callable[[], Awaitable[Any]]:
    task = await pending_task(client, fake)
    return lambda: client.cancel(task.task_id)


async def _op_result(client: DashScopeClient, fake: FakeDashScope) -> Callable[[], Awaitable[Any]]:
    state = await succeeded_task(client, fake)
    assert state.image_url
    url = state.image_url
    return lambda: client.download_result(url)


OPERATIONS = {
    "policy": _op_policy,
    "upload": _op_upload,
    "submit": _op_submit,
    "query": _op_query,
    "cancel": _op_cancel,
    "result": _op_result,
}
EXPECTED: dict[str, Callable[[Any], bool]] = {
    "policy": lambda value: isinstance(value, UploadPolicy),
    "upload": lambda value: isinstance(value, str) and value.startswith("oss://"),
    "submit": lambda value: isinstance(value, TaskState) and value.status == "PENDING",
    "query": lambda value: isinstance(value, TaskState) and value.status == "PENDING",
    "cancel": lambda value: value is True,
    "result": lambda value: isinstance(value, bytes) and value[:2] == b"\xff\xd8",
}
FAULTS = ["429", "500", "502", "503", "drop", "timeout"]
# Answers that prove no task was created (503 is ModelUnavailable, a refusal with a code).
SUBMIT_SAFE_FAULTS = {"429", "503"}


# A submit that may have arrived is never resent: see the ambiguity tests below.
RECOVERABLE = [
    (endpoint, fault)
    for endpoint in OPERATIONS
    for fault in FAULTS
    if endpoint != "submit" or fault in SUBMIT_SAFE_FAULTS
]


@pytest.mark.parametrize(("endpoint", "fault"), RECOVERABLE)
async def test_retryable_faults_are_recovered(
    session: aiohttp.ClientSession,
    fake: FakeDashScope,
    endpoint: Any,
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(session, fake, request_timeout=0.3)
    operation = await OPERATIONS[endpoint](client, fake)
    before = fake.requests[endpoint]
    if fault == "drop":
        fake.drop_next(endpoint, count=2)  # aiohttp itself resends an idempotent GET once
    elif fault == "timeout":
        fake.delay_next(endpoint, 0.6)
    else:
        fake.fail_next(endpoint, int(fault), count=2)

    with caplog.at_level(logging.WARNING, logger="services.dashscope"):
        assert EXPECTED[endpoint](await operation())

    assert fake.requests[endpoint] - before >= 2
    assert any("retrying" in r.getMessage() for r in caplog.records)


async def test_retry_after_header_is_honoured(client: DashScopeClient, fake: FakeDashScope) -> None:
    fake.fail_next("query", 429, retry_after=0.3)
    started = time.monotonic()
    assert (await client.query("no-such-task")).status == "UNKNOWN"
    assert time.monotonic() - started >= 0.3  # FAST_RETRY alone would wait <= 0.01 s


async def test_retries_are_bounded(client: DashScopeClient, fake: FakeDashScope) -> None:
    fake.fail_next("query", 503, count=10)
    with pytest.raises(DashScopeError) as caught:
        await client.query("t")
    assert (caught.value.kind, caught.value.http_status) == (ErrorKind.SERVER_ERROR, 503)
    assert caught.value.code == "ModelUnavailable" and caught.value.retryable
    assert caught.value.attempts == fake.requests["query"] == FAST_RETRY.attempts


async def test_non_json_gateway_error_has_code_unknown(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    fake.fail_next("policy", 502, count=10)
    with pytest.raises(DashScopeError) as caught:
        await client.get_upload_policy()
    assert (caught.value.code, caught.value.kind) == ("Unknown", ErrorKind.SERVER_ERROR)


# -- permanent errors are raised at once -------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "status", "code", "kind"),
    [
        ("policy", 401, "InvalidApiKey", ErrorKind.SERVICE_UNAVAILABLE),
        ("policy", 400, "InvalidParameter", ErrorKind.INVALID_INPUT),
        ("upload", 400, "EntityTooLarge", ErrorKind.INVALID_SIZE),
        ("upload", 403, "SignatureDoesNotMatch", ErrorKind.SERVICE_UNAVAILABLE),
        ("submit", 400, "InvalidParameter", ErrorKind.INVALID_INPUT),
        ("submit", 400, "InvalidURL", ErrorKind.INVALID_URL),
        ("submit", 400, "DataInspectionFailed", ErrorKind.CONTENT_REFUSED),
        ("submit", 400, "Arrearage", ErrorKind.SERVICE_UNAVAILABLE),
        ("submit", 403, "AccessDenied.Unpurchased", ErrorKind.SERVICE_UNAVAILABLE),
        ("submit", 403, "AllocationQuota.FreeTierOnly", ErrorKind.SERVICE_UNAVAILABLE),
        ("submit", 404, "ModelNotFound", ErrorKind.SERVICE_UNAVAILABLE),
        ("query", 401, "InvalidApiKey", ErrorKind.SERVICE_UNAVAILABLE),
        ("cancel", 403, "Model.AccessDenied", ErrorKind.SERVICE_UNAVAILABLE),
    ],
)
async def test_permanent_errors_are_not_retried(
    client: DashScopeClient, fake: FakeDashScope, endpoint: Any, status: int, code: str, kind: Any
) -> None:
    operation = await OPERATIONS[endpoint](client, fake)
    before = fake.requests[endpoint]
    fake.fail_next(endpoint, status, code, count=5)
    with pytest.raises(DashScopeError) as caught:
        await operation()
    error = caught.value
    assert (error.code, error.http_status, error.kind) == (code, status, kind)
    assert not error.retryable and error.request_id
    assert fake.requests[endpoint] - before == 1


async def test_real_auth_and_model_errors(
    session: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    with pytest.raises(DashScopeError) as caught:
        await make_client(session, fake, api_key="sk-wrong").get_upload_policy()
    assert (caught.value.code, caught.value.kind) == (
        "InvalidApiKey",
        ErrorKind.SERVICE_UNAVAILABLE,
    )
    with pytest.raises(DashScopeError) as caught:
        await make_client(session, fake, model="wanx-v1").get_upload_policy()
    assert caught.value.message == "Model not exist."
    assert caught.value.kind is ErrorKind.SERVICE_UNAVAILABLE
    assert fake.requests["policy"] == 2


async def test_expired_policy_is_recognisable(
    client: DashScopeClient, fake: FakeDashScope, clock: FakeClock
) -> None:
    policy = await client.get_upload_policy()
    clock.now += 301
    with pytest.raises(DashScopeError) as caught:
        await client.upload(policy, PERSON, "p.jpg")
    error = caught.value
    assert (error.code, error.http_status, error.kind) == (
        "AccessDenied",
        403,
        ErrorKind.POLICY_EXPIRED,
    )
    assert fake.requests["upload"] == 1 and fake.upload_count == 0


async def test_error_text_never_contains_the_api_key(
    client: DashScopeClient, fake: FakeDashScope, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_next("query", 500, message=f"bad key {fake.api_key}", count=10)
    with (
        caplog.at_level(logging.DEBUG, logger="services.dashscope"),
        pytest.raises(DashScopeError) as caught,
    ):
        await client.query("t")
    assert fake.api_key not in str(caught.value) + repr(caught.value)
    assert caplog.records and fake.api_key not in caplog.text


# -- submit ambiguity --------------------------------------------------------------------


async def test_lost_submit_reply_is_ambiguous_and_not_resent(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    person, top = await upload_pair(client)
    fake.drop_next("submit")
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await client.submit(person, top, None)
    assert caught.value.kind is ErrorKind.NETWORK and not caught.value.retryable
    (record,) = fake.submits
    assert record["status"] is None and record["task_id"] in fake.tasks  # it exists: billed


async def test_submit_read_timeout_is_ambiguous(
    session: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    client = make_client(session, fake, request_timeout=0.3)
    person, top = await upload_pair(client)
    fake.delay_next("submit", 0.6)
    with pytest.raises(SubmitOutcomeUnknown):
        await client.submit(person, top, None)
    assert len(fake.submits) == 1


async def test_submit_throttled_then_accepted_once(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    person, top = await upload_pair(client)
    fake.fail_next("submit", 429)
    await client.submit(person, top, None)
    assert [record["status"] for record in fake.submits] == [429, 200]
    assert len(fake.tasks) == 1


@pytest.mark.parametrize(("status", "code"), [(500, None), (502, None), (504, None)])
async def test_submit_answered_5xx_after_the_task_was_created_is_unknown_not_resent(
    client: DashScopeClient, fake: FakeDashScope, status: int, code: str | None
) -> None:
    person, top = await upload_pair(client)
    fake.fail_next("submit", status, code, after_processing=True)
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await client.submit(person, top, None)
    assert caught.value.http_status == status
    assert len(fake.submits) == 1 and len(fake.tasks) == 1


async def test_submit_model_unavailable_is_a_refusal_and_retried(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    person, top = await upload_pair(client)
    fake.fail_next("submit", 503, "ModelUnavailable")
    await client.submit(person, top, None)
    assert [record["status"] for record in fake.submits] == [503, 200]
    assert len(fake.tasks) == 1


async def test_list_tasks_finds_a_task_created_in_the_window(
    client: DashScopeClient, fake: FakeDashScope, clock: FakeClock
) -> None:
    person, top = await upload_pair(client)
    task = await client.submit(person, top, None)
    listed = await client.list_tasks(clock.now - 5, clock.now + 5)
    assert [t.task_id for t in listed] == [task.task_id]
    assert listed[0].model == "aitryon-plus" and listed[0].created_at is not None
    assert await client.list_tasks(clock.now + 60, clock.now + 120) == []
    assert fake.list_calls == 2


LIST_SHAPES: list[dict[str, Any]] = [
    {"total": 1, "data": [{"task_id": "t1", "gmt_create": 1709260684485}], "total_page": 1},
    {"output": {"data": [{"task_id": "t1", "gmt_create": 1709260684.485}]}},
    {"output": {"tasks": [{"taskId": "t1", "submit_time": "2024-03-01 10:38:04.485"}]}},
    {"data": {"list": [{"id": "t1", "create_time": "20240301103804"}]}},
    {"data": [{"task_id": "t1"}, {"no_id": 1}, "junk"]},
]


@pytest.mark.parametrize("body", LIST_SHAPES)
def test_task_list_shapes(body: dict[str, Any]) -> None:
    import json

    from multidict import CIMultiDict, CIMultiDictProxy

    from services.dashscope.client import parse_task_list
    from services.dashscope.models import Reply

    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
    tasks, _ = parse_task_list(Reply("list", 200, headers, json.dumps(body).encode()))
    assert [t.task_id for t in tasks] == ["t1"]
    if tasks[0].created_at is not None:
        assert abs(tasks[0].created_at - 1709260684) < 1


class FlakyResolver(AbstractResolver):
    """Fails the first ``failures`` lookups: a connect error before anything was sent."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("temporary failure in name resolution")
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=family, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


async def test_submit_connect_error_is_retried(fake: FakeDashScope) -> None:
    resolver = FlakyResolver(failures=2)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = make_client(
            session, fake, base_url=fake.base_url.replace("127.0.0.1", "localhost")
        )
        person, top = fake.add_file("p.jpg", PERSON), fake.add_file("t.png", GARMENT)
        task = await client.submit(person, top, None)
    assert task.status == "PENDING"
    assert resolver.calls == 3 and len(fake.submits) == 1


# -- task states -------------------------------------------------------------------------


async def test_unknown_and_forgotten_tasks(client: DashScopeClient, fake: FakeDashScope) -> None:
    missing = await client.query("1111")
    assert (missing.task_id, missing.status, missing.is_terminal) == ("1111", "UNKNOWN", True)

    task = await pending_task(client, fake)
    fake.forget(task.task_id)
    state = await client.query(task.task_id)
    assert state.status == "UNKNOWN"
    error = state.error()
    assert error is not None and error.kind is ErrorKind.TASK_EXPIRED


async def test_task_records_expire(
    client: DashScopeClient, fake: FakeDashScope, clock: FakeClock
) -> None:
    task = await pending_task(client, fake)
    clock.now += 24 * 3600 + 1
    assert (await client.query(task.task_id)).status == "UNKNOWN"


async def test_intermediate_statuses_are_not_terminal(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    fake.hold = True
    person, top = fake.add_file("p.jpg", PERSON), fake.add_file("t.png", GARMENT)
    task = await client.submit(person, top, None)
    await fake.wait_for(lambda: fake.tasks[task.task_id].status == "RUNNING")
    for status in ("PRE-PROCESSING", "RUNNING", "POST-PROCESSING", "SUSPENDED", "BRAND-NEW"):
        fake.set_status(task.task_id, status)
        state = await client.query(task.task_id)
        assert state.status == status and not state.is_terminal and state.error() is None
    fake.complete(task.task_id)
    assert (await finished(client, fake, task.task_id)).status == "SUCCEEDED"


async def test_scripted_failure_reaches_the_caller(
    client: DashScopeClient, fake: FakeDashScope
) -> None:
    fake.script_next_task("FAILED", "InvalidPerson")
    person, top = await upload_pair(client)
    task = await client.submit(person, top, None)
    state = await finished(client, fake, task.task_id)
    assert (state.status, state.code) == ("FAILED", "InvalidPerson")
    error = state.error()
    assert error is not None and error.kind is ErrorKind.INVALID_PERSON and not error.retryable


async def test_cancel_pending_versus_running(client: DashScopeClient, fake: FakeDashScope) -> None:
    pending = await pending_task(client, fake)
    assert await client.cancel(pending.task_id) is True
    state = await client.query(pending.task_id)
    assert state.status == "CANCELED"
    error = state.error()
    assert error is not None and error.kind is ErrorKind.CANCELED

    fake.hold, fake.max_concurrent = True, 5
    running = await client.submit(
        fake.add_file("p.jpg", PERSON), fake.add_file("t.png", GARMENT), None
    )
    await fake.wait_for(lambda: fake.tasks[running.task_id].status == "RUNNING")
    assert await client.cancel(running.task_id) is False
    assert fake.cancels == [pending.task_id, running.task_id]
    assert fake.tasks[running.task_id].status == "RUNNING"


async def test_expired_result_url(client: DashScopeClient, fake: FakeDashScope) -> None:
    state = await succeeded_task(client, fake)
    assert state.image_url
    fake.expire_results()
    with pytest.raises(DashScopeError) as caught:
        await client.download_result(state.image_url)
    assert (caught.value.kind, caught.value.http_status) == (ErrorKind.TASK_EXPIRED, 403)
    assert fake.requests["result"] == 1


async def test_result_url_expires_with_time(
    client: DashScopeClient, fake: FakeDashScope, clock: FakeClock
) -> None:
    state = await succeeded_task(client, fake)
    assert state.image_url
    clock.now += 24 * 3600 + 1
    with pytest.raises(DashScopeError) as caught:
        await client.download_result(state.image_url)
    assert caught.value.kind is ErrorKind.TASK_EXPIRED


async def test_oss_urls_need_the_resolve_header(
    session: aiohttp.ClientSession, client: DashScopeClient, fake: FakeDashScope
) -> None:
    """What the client's header prevents: the same body without it fails the task."""
    person, top = await upload_pair(client)
    body = {"model": "aitryon-plus", "input": {"person_image_url": person, "top_garment_url": top}}
    headers = {"Authorization": f"Bearer {fake.api_key}", "X-DashScope-Async": "enable"}
    url = fake.base_url + "/services/aigc/image2image/image-synthesis"
    async with session.post(url, json=body, headers=headers) as response:
        task_id = (await response.json())["output"]["task_id"]
    state = await finished(client, fake, task_id)
    assert (state.status, state.code) == ("FAILED", "InvalidURL")
    error = state.error()
    assert error is not None and error.kind is ErrorKind.INVALID_URL


async def test_query_limiter_keeps_under_the_double_limit(
    session: aiohttp.ClientSession, fake: FakeDashScope
) -> None:
    # 5% slack on the period absorbs request latency between client and server clocks.
    limiter = SlidingWindowLimiter(20, period=1.05)
    client = make_client(session, fake, query_limiter=limiter)
    states = await asyncio.gather(*(client.query(f"t{i}") for i in range(25)))
    assert all(state.status == "UNKNOWN" for state in states)
    assert fake.max_queries_in_window(1.0) <= 20
    assert fake.throttled["query"] == 0 and fake.requests["query"] == 25


# -- odd answers (a tiny ad-hoc server, since the double never sends them) ------------------


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"output": {"task_id": "t1", "task_status": "UNKNOWN"}}, DashScopeError),
        ({"output": {"task_status": "PENDING"}}, SubmitOutcomeUnknown),
        ({"request_id": "r"}, SubmitOutcomeUnknown),
    ],
)
async def test_odd_submit_answers_raise(
    session: aiohttp.ClientSession, body: dict[str, Any], error_type: type[Exception]
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/api/v1/services/aigc/image2image/image-synthesis", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = DashScopeClient(
            session, api_key="k", base_url=f"http://127.0.0.1:{port}/api/v1", model="aitryon"
        )
        with pytest.raises(error_type):
            await client.submit("http://x/p.jpg", "http://x/t.jpg", None)
    finally:
        await runner.cleanup()


# -- the mapping table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "status", "kind"),
    [
        ("InvalidPerson", "", 200, ErrorKind.INVALID_PERSON),
        ("InvalidGarment", "", 400, ErrorKind.INVALID_GARMENT),
        ("InvalidInputLength", "", None, ErrorKind.INVALID_SIZE),
        ("InvalidURL.Timeout", "", 400, ErrorKind.INVALID_URL),
        ("data_inspection_failed", "", 400, ErrorKind.CONTENT_REFUSED),
        (
            "AccessDenied",
            "Invalid according to Policy: Policy expired.",
            403,
            ErrorKind.POLICY_EXPIRED,
        ),
        ("AccessDenied", SYNC_DENIED, 403, ErrorKind.SERVICE_UNAVAILABLE),
        ("Throttling.AllocationQuota", "", 429, ErrorKind.THROTTLED),
        ("Whatever", "", 429, ErrorKind.THROTTLED),
        ("InternalError.Algo", "", 500, ErrorKind.SERVER_ERROR),
        ("InternalError.Timeout", "", None, ErrorKind.TIMEOUT),
        ("ModelUnavailable", "", 503, ErrorKind.SERVER_ERROR),
        ("BadRequest.EmptyInput", "", 400, ErrorKind.INVALID_INPUT),
        ("InvalidParameter", "Model not exist.", 400, ErrorKind.SERVICE_UNAVAILABLE),
        ("Unknown", "", 502, ErrorKind.SERVER_ERROR),
        ("Unknown", "", None, ErrorKind.UNKNOWN),
    ],
)
def test_classification(code: str, message: str, status: int | None, kind: ErrorKind) -> None:
    assert classify(code, message, status) is kind
    assert DashScopeError(code, message, http_status=status).kind is kind


def test_unrecognised_statuses_are_not_terminal() -> None:
    assert not TaskState("t", "SUSPENDED").is_terminal
    assert all(TaskState("t", status).is_terminal for status in TaskState.TERMINAL)
