"""Temporary file storage: getPolicy and the OSS PostObject form upload (dashscope-api.md §1–§3).

getPolicy issues a signed policy (300 s, reusable, 100 QPS per model) for a fresh
``upload_dir``; OSS checks signature, expiry, key prefix, size and forbid-overwrite, answers
200/201/204 per ``success_action_status``, and errors in XML with ``x-oss-ec``. Each object is
bound to the model its policy was issued for and lives 48 h; ``oss://<key>`` resolves only for
that model and only with ``X-DashScope-OssResourceResolve: enable`` (results.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import BodyPartReader, web

from tests.doubles.dashscope.faults import Faults
from tests.doubles.dashscope.records import StoredObject, Window
from tests.doubles.dashscope.wire import (
    ACCOUNT_HASH,
    BUCKET,
    CAPACITY_LIMIT_MB,
    MAX_FILE_SIZE_MB,
    MODEL_NOT_EXIST,
    OSS_ACCESS_KEY_ID,
    POLICY_QPS,
    json_error,
    json_response,
    new_id,
    oss_request_id,
    sign,
    xml_error,
)


class _FormError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# OSS field names are case-insensitive; these are kept in their documented spelling.
_FIELD_NAMES = {"ossaccesskeyid": "OSSAccessKeyId", "signature": "Signature"}


class Storage(Faults):
    """getPolicy and the OSS upload host."""

    def vanish(self, key: str) -> None:
        """An uploaded object disappears early (``oss://`` prefix optional): tasks that use it
        fail with InvalidURL, as with an object past its 48 h."""
        self.objects.pop(key.removeprefix("oss://"), None)

    def expire_uploads(self) -> None:
        """Every uploaded object is past its lifetime."""
        for stored in self.objects.values():
            stored.expires_at = float("-inf")

    async def _get_policy(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        model = request.query.get("model", "")
        if request.query.get("action") != "getPolicy" or not model:
            return json_error(400, "InvalidParameter")
        if model not in self.models:
            return json_error(400, "InvalidParameter", MODEL_NOT_EXIST)
        if not self._policy_windows.setdefault(model, Window(POLICY_QPS)).admit():
            self.throttled["policy"] += 1
            return json_error(429, "Throttling.RateQuota")
        request_id = new_id()
        return json_response(
            200, {"data": self.issue_policy(model, request_id), "request_id": request_id}
        )

    def issue_policy(
        self, model: str, request_id: str = "", *, max_bytes: int | None = None
    ) -> dict[str, Any]:
        """getPolicy's ``data``: a signed credential for uploads under a fresh ``upload_dir``."""
        now = self.clock()
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        upload_dir = f"dashscope-instant/{ACCOUNT_HASH}/{day}/{request_id or new_id()}"
        limit = MAX_FILE_SIZE_MB * 1024 * 1024 if max_bytes is None else max_bytes
        policy = self._policy_document(upload_dir, now + self.policy_ttl, limit)
        self._issued[policy] = model
        ttl = self.policy_ttl
        return {
            "policy": policy,
            "signature": sign(policy.encode()),
            "upload_dir": upload_dir,
            "upload_host": self.upload_host,
            "expire_in_seconds": int(ttl) if float(ttl).is_integer() else ttl,
            "max_file_size_mb": MAX_FILE_SIZE_MB,
            "capacity_limit_mb": CAPACITY_LIMIT_MB,
            "oss_access_key_id": OSS_ACCESS_KEY_ID,
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }

    @staticmethod
    def _policy_document(upload_dir: str, expires_at: float, max_bytes: int) -> str:
        expiration = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        document = {
            "expiration": expiration[:-3] + "Z",
            "conditions": [
                ["content-length-range", 0, max_bytes],
                ["starts-with", "$key", upload_dir],
                {"bucket": BUCKET},
                {"x-oss-object-acl": "private"},
                {"x-oss-forbid-overwrite": "true"},
            ],
        }
        text = json.dumps(document, separators=(",", ":")).replace("/", "\\/")
        return base64.b64encode(text.encode()).decode()

    # -- OSS PostObject --------------------------------------------------------------

    async def _post_object(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/form-data"):
            return xml_error(400, "MalformedPOSTRequest")
        try:
            fields, data = await self._read_form(request)
        except _FormError as error:
            return xml_error(400, error.code, error.message)
        except (ValueError, AssertionError, UnicodeDecodeError):
            return xml_error(400, "MalformedPOSTRequest")
        problem = self._check_upload(fields, data)
        if problem is not None:
            return problem
        key = fields["key"]
        model = self._issued.get(fields["policy"])
        self.objects[key] = StoredObject(data, model, self.clock() + self.upload_ttl)
        self.uploads[key] = data
        self.upload_count += 1
        return self._upload_success(fields, key, data)

    @staticmethod
    async def _read_form(request: web.Request) -> tuple[dict[str, str], bytes]:
        """Form fields (names lower-cased, except those OSS spells with capitals) + the file."""
        reader = await request.multipart()
        fields: dict[str, str] = {}
        data: bytes | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _FormError("InvalidArgument", "Nested multipart is not supported.")
            if data is not None:
                raise _FormError("InvalidArgument", "The file must be the last form field.")
            name = (part.name or "").lower()
            if name == "file":
                data = bytes(await part.read())
            else:
                fields[_FIELD_NAMES.get(name, name)] = await part.text()
        if data is None:
            raise _FormError("InvalidArgument", "The file field is missing.")
        return fields, data

    def _check_upload(self, fields: dict[str, str], data: bytes) -> web.Response | None:
        auth = [fields.get(name) for name in ("OSSAccessKeyId", "policy", "Signature")]
        if not all(auth):
            return xml_error(400, "InvalidArgument", "OSSAccessKeyId, policy and Signature "
                             "must all be present.")  # fmt: skip
        if "key" not in fields:
            return xml_error(400, "InvalidArgument", "The key field is missing.")
        if fields["OSSAccessKeyId"] != OSS_ACCESS_KEY_ID:
            return xml_error(403, "InvalidAccessKeyId")
        if not hmac.compare_digest(fields["Signature"], sign(fields["policy"].encode())):
            return xml_error(403, "SignatureDoesNotMatch")
        try:
            document = json.loads(base64.b64decode(fields["policy"], validate=True))
            expires = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ")
            conditions = list(document["conditions"])
        except (ValueError, KeyError, TypeError):
            return xml_error(400, "InvalidPolicyDocument")
        if self.clock() > expires.replace(tzinfo=UTC).timestamp():
            return xml_error(403, "PolicyExpired")
        for condition in conditions:
            problem = self._check_condition(condition, fields, len(data))
            if problem is not None:
                return problem
        existing = self.objects.get(fields["key"])
        overwrite_forbidden = fields.get("x-oss-forbid-overwrite", "").lower() == "true"
        if existing is not None and existing.expires_at > self.clock() and overwrite_forbidden:
            return xml_error(409, "FileAlreadyExists")
        return None

    @staticmethod
    def _check_condition(condition: Any, fields: dict[str, str], size: int) -> web.Response | None:
        failed = xml_error(
            403,
            "AccessDenied",
            f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}",
        )
        if isinstance(condition, dict):
            for name, expected in condition.items():
                if name != "bucket" and fields.get(name.lower()) != expected:
                    return failed
            return None
        match condition:
            case ["content-length-range", int(low), int(high)]:
                if size > high:
                    return xml_error(400, "EntityTooLarge")
                if size < low:
                    return xml_error(400, "EntityTooSmall")
            case ["starts-with", str(name), str(prefix)]:
                if not fields.get(name.lstrip("$").lower(), "").startswith(prefix):
                    return failed
            case ["eq", str(name), str(value)]:
                if fields.get(name.lstrip("$").lower()) != value:
                    return failed
        return None

    @staticmethod
    def _upload_success(fields: dict[str, str], key: str, data: bytes) -> web.Response:
        etag = '"' + hashlib.md5(data).hexdigest().upper() + '"'
        headers = {"Server": "AliyunOSS", "x-oss-request-id": oss_request_id(), "ETag": etag}
        status = fields.get("success_action_status", "")
        if status == "200":
            return web.Response(status=200, headers=headers)
        if status == "201":
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>\n'
                f"  <Bucket>{BUCKET}</Bucket>\n"
                f"  <Location>https://{BUCKET}.oss-cn-beijing.aliyuncs.com/{escape(key)}</Location>\n"
                f"  <Key>{escape(key)}</Key>\n  <ETag>{escape(etag)}</ETag>\n</PostResponse>\n"
            )
            return web.Response(
                status=201, text=body, content_type="application/xml", headers=headers
            )
        return web.Response(status=204, headers=headers)
