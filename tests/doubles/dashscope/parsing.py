"""The parsing model ``aitryon-parsing-v1``: garment segmentation, synchronous
(dashscope-api.md §7).

``POST /api/v1/services/vision/image-process/process`` with no async header (with it: 403
"Current user api does not support asynchronous calls."), 10 RPS, body
``{"model":"aitryon-parsing-v1","input":{"image_url":…},"parameters":{"clothes_type":[…]}}``
where ``clothes_type`` is ``["upper"]``, ``["lower"]``, ``["dress"]`` or ``["upper","lower"]``.
200 answers ``output.parsing_img_url`` (RGBA png), ``output.crop_img_url`` (RGB png, a
garment URL try-on accepts) and ``output.bbox`` (``[x1,y1,x2,y2]``), each in the order of
``clothes_type`` with ``null`` where the person does not wear that garment, plus
``usage.image_count`` and ``request_id``. Errors are the usual JSON shape with HTTP 400
(InvalidParameter, InvalidParameter.ClothesType, InvalidURL, InvalidInputLength, …).
An ``oss://`` input must have been uploaded for the parsing model.

Which garments a person image "has" is test control: `person_has(image_bytes, "upper")`;
other images have `default_garments` (upper and lower).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from aiohttp import web

from tests.doubles.dashscope.images import garment_box, inspect, register_heif, render_parsing
from tests.doubles.dashscope.tasks import Tasks
from tests.doubles.dashscope.wire import (
    ASYNC_DENIED,
    CLOTHES_TYPES,
    MODEL_NOT_EXIST,
    PARSING_MODEL,
    URL_ERROR,
    Rejected,
    json_error,
    json_response,
    new_id,
)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Parsing(Tasks):
    """The synchronous parsing endpoint."""

    def person_has(self, image: bytes, *garments: str) -> None:
        """The person in `image` wears exactly these garments ("upper", "lower", "dress");
        parsing answers ``null`` for the others."""
        unknown = set(garments) - {"upper", "lower", "dress"}
        if unknown:
            raise ValueError(f"unknown garments {sorted(unknown)}")
        self.person_garments[_digest(image)] = frozenset(garments)

    async def _parse(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        if request.headers.get("X-DashScope-Async", "").lower() == "enable":
            return json_error(403, "AccessDenied", ASYNC_DENIED)
        if not self._parsing_window.admit():
            self.throttled["parsing"] += 1
            return json_error(429, "Throttling")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return json_error(400, "BadRequest.IllegalInput")
        problem = self._validate_parsing(body)
        if problem is not None:
            return problem
        types: list[str] = body["parameters"]["clothes_type"]
        oss_resolve = request.headers.get("X-DashScope-OssResourceResolve", "").lower()
        try:
            image = self._fetch(body["input"]["image_url"], PARSING_MODEL, oss_resolve == "enable")
            register_heif()
            size = await asyncio.to_thread(inspect, image)
        except Rejected as rejected:
            return json_error(400, rejected.code, rejected.message)
        worn = self.person_garments.get(_digest(image), self.default_garments)
        request_id = new_id()
        output: dict[str, list[Any]] = {"parsing_img_url": [], "crop_img_url": [], "bbox": []}
        for index, garment in enumerate(types):
            if garment not in worn:
                for values in output.values():
                    values.append(None)
                continue
            box = garment_box(size, garment)
            parsing, crop = await asyncio.to_thread(render_parsing, image, box)
            output["parsing_img_url"].append(
                self._publish(f"{request_id}-parsing-{index}.png", parsing)
            )
            output["crop_img_url"].append(self._publish(f"{request_id}-crop-{index}.png", crop))
            output["bbox"].append(box)
        return json_response(
            200, {"output": output, "usage": {"image_count": 1}, "request_id": request_id}
        )

    def _validate_parsing(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return json_error(400, "BadRequest.IllegalInput")
        model = body.get("model")
        if not model:
            return json_error(400, "BadRequest.EmptyModel")
        if model not in self.models:
            return json_error(400, "InvalidParameter", MODEL_NOT_EXIST)
        if model != PARSING_MODEL:
            return json_error(400, "InvalidParameter", URL_ERROR)
        inputs = body.get("input")
        if not isinstance(inputs, dict) or not inputs:
            return json_error(400, "BadRequest.EmptyInput")
        if not isinstance(inputs.get("image_url"), str) or not inputs["image_url"]:
            return json_error(400, "InvalidParameter")
        parameters = body.get("parameters")
        if not isinstance(parameters, dict):
            return json_error(400, "InvalidParameter")
        if parameters.get("clothes_type") not in CLOTHES_TYPES:
            return json_error(400, "InvalidParameter.ClothesType")
        return None
