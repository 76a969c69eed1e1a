"""Routes of the DashScope double: one server plays the API host, the OSS upload host, the
result host and a public file host (dashscope-api.md "Emulator checklist")."""

from __future__ import annotations

from aiohttp import web

from tests.doubles.dashscope.parsing import Parsing
from tests.doubles.dashscope.wire import API_PREFIX, PARSING_PATH, SUBMIT_PATH, json_response


class FakeDashScope(Parsing):
    """DashScope + OSS temp storage + result host, in one local aiohttp server.

    Use with ``async with FakeDashScope() as fake`` and give the client ``fake.base_url``.
    """

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        return app

    def _add_routes(self, app: web.Application) -> None:
        routes = (
            ("GET", API_PREFIX + "/uploads", self._get_policy, "policy"),
            ("POST", "/oss", self._post_object, "upload"),
            ("POST", "/oss/", self._post_object, "upload"),
            ("POST", API_PREFIX + SUBMIT_PATH, self._submit, "submit"),
            ("POST", API_PREFIX + SUBMIT_PATH + "/", self._submit, "submit"),
            ("GET", API_PREFIX + "/tasks/{task_id}", self._query, "query"),
            ("POST", API_PREFIX + "/tasks/{task_id}/cancel", self._cancel, "cancel"),
            ("GET", API_PREFIX + "/tasks", self._list, "list"),
            ("POST", API_PREFIX + PARSING_PATH, self._parse, "parsing"),
            ("GET", "/results/{name}", self._get_result, "result"),
            ("GET", "/files/{name}", self._get_file, "file"),
            ("GET", "/_double/stats", self._stats, "stats"),
        )
        for method, path, handler, name in routes:
            suffix = ".slash" if path.endswith("/") else ""  # names must be unique identifiers
            app.router.add_route(method, path, handler, name=name + suffix)

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(200, self.stats())
