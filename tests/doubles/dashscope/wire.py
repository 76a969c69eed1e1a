"""Wire facts of DashScope and OSS: hosts, limits, error messages and the two error shapes.

DashScope answers HTTP errors as JSON ``{"code","message","request_id"}`` at the top level;
OSS answers XML ``<Error>`` with an ``x-oss-ec`` header (dashscope-api.md §2, §6, gotcha 10).
Messages are those recorded in the reference, typos included.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from xml.sax.saxutils import escape

from aiohttp import web

API_PREFIX = "/api/v1"
SUBMIT_PATH = "/services/aigc/image2image/image-synthesis"
OSS_ACCESS_KEY_ID = "LTAI5tDoubleAccessKeyId"
OSS_SECRET = b"double-oss-secret"  # signs policies and result URLs
BUCKET = "dashscope-file-mgr"
RESULT_BUCKET = "dashscope-result-bj"
ACCOUNT_HASH = "52afe077fb4825c6d74411758cb1ab98"
MAX_FILE_SIZE_MB = 100
CAPACITY_LIMIT_MB = 999999999
POLICY_QPS = 100
BEIJING = timezone(timedelta(hours=8))
MIN_IMAGE_BYTES, MAX_IMAGE_BYTES = 5 * 1024, 5 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 150, 4096
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "HEIF", "WEBP"})
RESOLUTIONS = {1024: (576, 1024), 1280: (720, 1280)}

PARSING_PATH = "/services/vision/image-process/process"
TRYON_MODELS = ("aitryon-plus", "aitryon")
REFINER_MODEL = "aitryon-refiner"
PARSING_MODEL = "aitryon-parsing-v1"
# Every model the double can play; the default account has the try-on models only (a model
# not in `FakeDashScope.models` answers "Model not exist.").
ALL_MODELS = (*TRYON_MODELS, REFINER_MODEL, PARSING_MODEL)
CLOTHES_TYPES = (["upper"], ["lower"], ["dress"], ["upper", "lower"])

ENDPOINTS = ("policy", "upload", "submit", "query", "cancel", "list", "result", "parsing")
XML_ENDPOINTS = frozenset({"upload", "result", "file"})
Endpoint = Literal["policy", "upload", "submit", "query", "cancel", "list", "result", "parsing"]


# Messages as recorded in the reference (typos included).
MESSAGES = {
    "InvalidParameter": "The request is missing required parameters or in a wrong format, "
    "please check the parameters that you send.",
    "InvalidURL": "The request URL is invalid, please check the request URL is available and "
    "the request image format is one of the following types: JPEG, JPG, PNG, BMP, and WEBP.",
    "InvalidPerson": "The input image has no human body or multi human bodies. "
    "Please upload other image with single person.",
    "InvalidGarment": "Missing clothing image.Please input at least one top garment or bottom "
    "garment image.",
    "InvalidInputLength": "The image resolution is invalid, please make sure that the largest "
    "length of image is smaller than 4096, and the smallest length of image is larger than 150. "
    "and the size of image ranges from 5KB to 5MB.",
    "InvalidApiKey": "Invalid API-key provided.",
    "AccessDenied": "Access denied.",
    "Arrearage": "Access denied, please make sure your account is in good standing.",
    "DataInspectionFailed": "Input or output data may contain inappropriate content.",
    "Throttling": "Requests throttling triggered.",
    "Throttling.RateQuota": "Requests rate limit exceeded, please try again later.",
    "InternalError": "An internal error has occured, please try again later or contact "
    "service support.",
    "InternalError.Timeout": "An internal timeout error has occured during execution, please "
    "try again later or contact service support.",
    "ModelUnavailable": "Model is unavailable, please try again later.",
    "ModelNotFound": "Model can not be found.",
    "UnsupportedOperation": "Failed to cancel the task, please confirm if the task is in "
    "PENDING status.",
    "BadRequest.IllegalInput": "The input parameter requires json format.",
    "BadRequest.EmptyModel": 'Required parameter "model" missing from request.',
    "BadRequest.EmptyInput": "Required input parameter missing from request.",
    "BadRequest.EmptyParameters": 'Required parameter "parameters" missing from request.',
    "Throttling.AllocationQuota": "Allocated quota exceeded, please increase your quota limit.",
    "InvalidParameter.ClothesType": "The request parameter is invalid, please check the "
    "request parameter.",
    "InvalidParameter.DataInspection": "Unable to download the media resource during the data "
    "inspection process.",
}
SYNC_DENIED = "current user api does not support synchronous calls."
ASYNC_DENIED = "Current user api does not support asynchronous calls."
URL_ERROR = "url error, please check url！"  # a model sent to another model's endpoint
UNABLE_TO_DOWNLOAD = MESSAGES["InvalidParameter.DataInspection"]
SIZE_MISMATCH = "The size of person image and coarse_image are not the same."
MODEL_NOT_EXIST = "Model not exist."
GATEWAY_BODY = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)

# OSS: code -> (message, EC). Only the two documented ECs are real; the rest are placeholders.
OSS_ERRORS = {
    "AccessDenied": ("AccessDenied", "0003-00000001"),
    "PolicyExpired": ("Invalid according to Policy: Policy expired.", "0006-00000213"),
    "SignatureDoesNotMatch": (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        "0002-00000705",
    ),
    "InvalidAccessKeyId": (
        "The OSS Access Key Id you provided does not exist in our records.",
        "0002-00000902",
    ),
    "MalformedPOSTRequest": (
        "The body of your POST request is not well-formed multipart/form-data",
        "0006-00000201",
    ),
    "InvalidArgument": ("Invalid argument.", "0006-00000202"),
    "InvalidPolicyDocument": ("Invalid Policy: Invalid JSON.", "0006-00000203"),
    "EntityTooLarge": ("Your proposed upload exceeds the maximum allowed size.", "0006-00000214"),
    "EntityTooSmall": (
        "Your proposed upload is smaller than the minimum allowed size.",
        "0006-00000215",
    ),
    "FileAlreadyExists": (
        "The object you specified already exists and can not be overwritten.",
        "0015-00000101",
    ),
    "NoSuchKey": ("The specified key does not exist.", "0026-00000001"),
    "RequestExpired": ("Request has expired.", "0002-00000069"),
    "InternalError": ("We encountered an internal error. Please try again.", "0001-00000001"),
    "ServiceUnavailable": ("Please reduce your request rate.", "0001-00000503"),
}

DEFAULT_JSON_ERROR = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    403: "AccessDenied",
    404: "ModelNotFound",
    429: "Throttling",
    500: "InternalError",
    503: "ModelUnavailable",
}
DEFAULT_XML_ERROR = {
    400: "InvalidArgument",
    403: "AccessDenied",
    404: "NoSuchKey",
    409: "FileAlreadyExists",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class Rejected(Exception):
    """A task input that fails the task with ``code`` (and optionally its own message)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message if message is not None else MESSAGES.get(code, code)


class Dropped(Exception):
    """Raised after closing the connection so that no response is written."""


def new_id() -> str:
    return str(uuid.uuid4())


def oss_request_id() -> str:
    return uuid.uuid4().hex[:24].upper()


def beijing_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, BEIJING).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def sign(data: bytes) -> str:
    return base64.b64encode(hmac.new(OSS_SECRET, data, hashlib.sha1).digest()).decode()


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        charset="UTF-8",
        headers={"Server": "istio-envoy", **(headers or {})},
    )


def json_error(
    status: int, code: str, message: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """DashScope's error shape: ``{"code","message","request_id"}`` at the top level."""
    text = message if message is not None else MESSAGES.get(code, code)
    return json_response(status, {"code": code, "message": text, "request_id": new_id()}, headers)


def xml_error(
    status: int, code: str, message: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """OSS's error shape: an ``<Error>`` document plus ``x-oss-ec``/``x-oss-request-id``."""
    default_message, ec = OSS_ERRORS.get(code, (code, "0000-00000000"))
    if code == "PolicyExpired":
        code = "AccessDenied"
    request_id = oss_request_id()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{escape(code)}</Code>\n"
        f"  <Message>{escape(message if message is not None else default_message)}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        f"  <HostId>{BUCKET}.oss-cn-beijing.aliyuncs.com</HostId>\n"
        f"  <EC>{ec}</EC>\n"
        f"  <RecommendDoc>https://api.aliyun.com/troubleshoot?q={ec}</RecommendDoc>\n"
        "</Error>\n"
    )
    return web.Response(
        status=status,
        text=body,
        content_type="application/xml",
        headers={
            "Server": "AliyunOSS",
            "x-oss-request-id": request_id,
            "x-oss-ec": ec,
            **(headers or {}),
        },
    )
