"""Result and file hosts, and how the service fetches a task's inputs.

Results (try-on and refiner images, parsing crops) sit behind pre-signed OSS URLs
``/results/<name>?Expires=…&OSSAccessKeyId=…&Signature=…`` valid 24 h, 403 once expired
(dashscope-api.md §5, gotcha 5/8). ``/files/<name>`` plays any public http(s) URL a test
publishes. Inputs resolve from ``oss://`` keys (same model, header required, not expired),
from those files, or from live result URLs; anything else fails the task with InvalidURL.
"""

from __future__ import annotations

import hmac
from urllib.parse import quote, unquote

from aiohttp import web

from tests.doubles.dashscope.records import FakeTask, StoredResult
from tests.doubles.dashscope.storage import Storage
from tests.doubles.dashscope.wire import (
    OSS_ACCESS_KEY_ID,
    RESULT_BUCKET,
    Rejected,
    oss_request_id,
    sign,
    xml_error,
)


class Results(Storage):
    """The result host, the public file host and input fetching."""

    def add_file(self, name: str, data: bytes) -> str:
        """Publishes ``data`` at an http URL the double accepts as task input."""
        self.files[name] = data
        return f"{self.origin}/files/{quote(name)}"

    def undownloadable_url(
        self, name: str = "unreachable.jpg", code: str = "InvalidParameter.DataInspection"
    ) -> str:
        """A URL the service cannot download: tasks (and parsing calls) that use it fail
        with `code` ("Unable to download the media resource during the data inspection
        process." by default; ``code="InvalidURL"`` for the other documented answer)."""
        self.undownloadable.add(name)
        self._undownloadable_codes[name] = code
        return f"{self.origin}/files/{quote(name)}"

    def expire_results(self) -> None:
        for result in self.results.values():
            result.expires_at = float("-inf")

    def result_data(self, url: str) -> bytes | None:
        """The image behind one of the double's result URLs (None if unknown)."""
        name = unquote(url.split("?")[0].rsplit("/results/", 1)[-1])
        result = self.results.get(name)
        return None if result is None else result.data

    def _fetch_input(self, task: FakeTask, url: str) -> bytes:
        return self._fetch(url, task.model, task.oss_resolve)

    def _fetch(self, url: str, model: str, oss_resolve: bool) -> bytes:
        """Resolves oss:// keys (uploaded for `model`, header required) and the double's own
        http URLs; raises `Rejected` as the real fetch would fail."""
        if url.startswith("oss://"):
            stored = self.objects.get(url.removeprefix("oss://"))
            if (
                not oss_resolve
                or stored is None
                or stored.expires_at < self.clock()
                or stored.model != model
            ):
                raise Rejected("InvalidURL")
            return stored.data
        prefix = self.origin + "/"
        if url.startswith(prefix + "files/"):
            name = unquote(url.removeprefix(prefix + "files/").split("?")[0])
            if name in self.undownloadable:
                raise Rejected(self._undownloadable_codes.get(name, "InvalidURL"))
            data = self.files.get(name)
            if data is not None:
                return data
        if url.startswith(prefix + "results/"):
            name = unquote(url.removeprefix(prefix + "results/").split("?")[0])
            result = self.results.get(name)
            if result is not None and result.expires_at >= self.clock():
                return result.data
        raise Rejected("InvalidURL")

    def _store_result(self, task: FakeTask, image: bytes) -> None:
        task.image_url = self._publish(f"{task.task_id}.jpg", image)

    def _publish(self, name: str, data: bytes) -> str:
        """Stores `data` on the result host and returns its pre-signed URL (24 h)."""
        expires = int(self.clock() + self.result_ttl)
        self.results[name] = StoredResult(data, float(expires))
        signature = sign(self._result_string_to_sign(name, expires).encode())
        return (
            f"{self.origin}/results/{name}?Expires={expires}"
            f"&OSSAccessKeyId={OSS_ACCESS_KEY_ID}&Signature={quote(signature, safe='')}"
        )

    @staticmethod
    def _result_string_to_sign(name: str, expires: int) -> str:
        return f"GET\n\n\n{expires}\n/{RESULT_BUCKET}/{name}"

    async def _get_result(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            expires = int(request.query["Expires"])
            signature = request.query["Signature"]
        except (KeyError, ValueError):
            return xml_error(
                403, "AccessDenied", "Anonymous access is forbidden for this operation."
            )
        expected = sign(self._result_string_to_sign(name, expires).encode())
        if request.query.get("OSSAccessKeyId") != OSS_ACCESS_KEY_ID:
            return xml_error(403, "InvalidAccessKeyId")
        if not hmac.compare_digest(signature, expected):
            return xml_error(403, "SignatureDoesNotMatch")
        result = self.results.get(name)
        now = self.clock()
        if now > expires or (result is not None and now > result.expires_at):
            return xml_error(403, "AccessDenied", "Request has expired.")
        if result is None:
            return xml_error(404, "NoSuchKey")
        return web.Response(
            body=result.data,
            content_type="image/png" if name.endswith(".png") else "image/jpeg",
            headers={"Server": "AliyunOSS", "x-oss-request-id": oss_request_id()},
        )

    async def _get_file(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["name"])
        if data is None:
            return xml_error(404, "NoSuchKey")
        return web.Response(body=data, content_type="application/octet-stream")
