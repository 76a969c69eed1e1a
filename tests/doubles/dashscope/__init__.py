"""A local stand-in for DashScope (aitryon) and its OSS temp-storage host, for tests and the bench.

One aiohttp server on 127.0.0.1 plays the hosts ``/work/shared/reference/dashscope-api.md``
describes:

* ``/api/v1/...``: getPolicy, task submit/query/cancel/list (JSON errors, HTTP 200 for FAILED
  and UNKNOWN tasks, 10 RPS submit and 20 QPS query sliding windows, 5 tasks out of PENDING),
  the refiner on the same task endpoint, and the synchronous parsing model;
* ``/oss``: the OSS PostObject upload host (signed policy, XML errors with ``x-oss-ec``);
* ``/results/<name>``: pre-signed result URLs that answer 403 once expired;
* ``/files/<name>``: public input URLs a test publishes.

Tests script it (``script_next_task``, ``fail_next``, ``drop_next``, ``delay_next``,
``submit_then_fail``, ``fail_for``, ``hold``, ``person_has``, ``vanish``) and observe it
(``submits``, ``submits_per_model()``, ``tasks_created``, ``parsing_calls``, ``list_calls``,
``query_times``, ``uploads``...); ``wait_for`` waits on any change.

Modules, each adding one concern to the class chain that ends in `FakeDashScope`:
wire (constants, error shapes) · records · images · core · faults · storage · results ·
tasks · parsing · server; ``__main__`` runs it standalone.
"""

from tests.doubles.dashscope.images import make_image
from tests.doubles.dashscope.records import FakeTask, Outcome, StoredObject, StoredResult
from tests.doubles.dashscope.server import FakeDashScope
from tests.doubles.dashscope.wire import (
    ALL_MODELS,
    API_PREFIX,
    ASYNC_DENIED,
    CLOTHES_TYPES,
    ENDPOINTS,
    GATEWAY_BODY,
    MESSAGES,
    MODEL_NOT_EXIST,
    OSS_ACCESS_KEY_ID,
    OSS_ERRORS,
    OSS_SECRET,
    PARSING_MODEL,
    PARSING_PATH,
    REFINER_MODEL,
    SIZE_MISMATCH,
    SUBMIT_PATH,
    SYNC_DENIED,
    TRYON_MODELS,
    UNABLE_TO_DOWNLOAD,
    URL_ERROR,
    Endpoint,
    json_error,
    xml_error,
)

__all__ = [
    "ALL_MODELS",
    "API_PREFIX",
    "ASYNC_DENIED",
    "CLOTHES_TYPES",
    "ENDPOINTS",
    "GATEWAY_BODY",
    "MESSAGES",
    "MODEL_NOT_EXIST",
    "OSS_ACCESS_KEY_ID",
    "OSS_ERRORS",
    "OSS_SECRET",
    "PARSING_MODEL",
    "PARSING_PATH",
    "REFINER_MODEL",
    "SIZE_MISMATCH",
    "SUBMIT_PATH",
    "SYNC_DENIED",
    "TRYON_MODELS",
    "UNABLE_TO_DOWNLOAD",
    "URL_ERROR",
    "Endpoint",
    "FakeDashScope",
    "FakeTask",
    "Outcome",
    "StoredObject",
    "StoredResult",
    "json_error",
    "make_image",
    "xml_error",
]
