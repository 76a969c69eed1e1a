"""HTTP routing of the Bot API double: ``/bot<token>/<method>`` and ``/file/bot<token>/<path>``.

Reads parameters from the query string, urlencoded or JSON bodies and multipart forms
(bot-api-wire.md "Encodings"), records every call in `calls` before serving it, applies
scripted faults, and answers ``{"ok": true, "result": ...}`` or Telegram's error shape.
Methods are case-insensitive and unknown ones answer 404 (PTB then raises InvalidToken, as
it would against Telegram).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.doubles.telegram.delivery import Delivery
from tests.doubles.telegram.files import json_response
from tests.doubles.telegram.params import parse_value
from tests.doubles.telegram.records import (
    EDIT_METHODS,
    JSON,
    MAX_FILE_UPLOAD,
    SEND_METHODS,
    ApiError,
    Call,
    UploadedFile,
    chat_id_param,
)


class FakeTelegram(Delivery):
    """The fake Bot API server plus the simulated Telegram world around the bot.

    Point a bot at it with ``base_url=f"{fake.base_url}/bot"`` and
    ``base_file_url=f"{fake.base_url}/file/bot"``; use it with ``async with FakeTelegram()``.
    """

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_FILE_UPLOAD + 10 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        return app

    async def _read_params(self, request: web.Request) -> JSON:
        params: JSON = {key: parse_value(key, value) for key, value in request.query.items()}
        if not request.body_exists:
            return params
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
            return params
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = UploadedFile(
                    key, value.filename, value.content_type, value.file.read()
                )
            else:
                params[key] = parse_value(key, str(value))
        return params

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        token_error = self._check_token(request.match_info["token"])
        if token_error is not None:
            return json_response(token_error.payload(), token_error.code)
        method = request.match_info["method"]
        key = method.lower()
        try:
            params = await self._read_params(request)
        except ApiError as error:
            return json_response(error.payload(), error.code)
        call = Call(method, params, self.clock())
        self.calls.append(call)
        self._notify()
        status = 200
        body: JSON = {}
        try:
            fault = self._take_fault(key)
            if fault is not None and fault.drop and not fault.after_processing:
                return self._drop(request, call)
            if fault is not None and not fault.drop and fault.delay <= 0:
                raise ApiError(fault.status, fault.description)
            flood = self._take_flood(key, params)
            if flood is not None:
                raise flood
            handler = self._methods.get(key)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
            if key in SEND_METHODS or key in EDIT_METHODS:
                chat_id = chat_id_param(params)
                if chat_id is not None and chat_id < 0:
                    self._group_sends.setdefault(chat_id, []).append(self.clock())
            if fault is not None and fault.delay > 0:  # an answer that comes too late
                await asyncio.sleep(fault.delay)  # cut short when the server closes
            elif fault is not None:  # a lost response: the call took effect
                return self._drop(request, call)
            body = {"ok": True, "result": result}
        except ApiError as error:
            status, body = error.code, error.payload()
            call.description = error.description
        call.status = status
        self._notify()
        return json_response(body, status)

    def _drop(self, request: web.Request, call: Call) -> web.StreamResponse:
        call.status = 0
        call.description = "connection dropped"
        self._notify()
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)
