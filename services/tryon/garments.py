"""Keep my own top/bottom: the person's garment, cut out by aitryon-parsing-v1.

`prepare_keep(person, slot)` starts the parsing in the background as soon as the user
chooses "keep mine", so the try-on's submit does not wait for it; `crop(person, slot)`
(the pipeline's step) joins that run, reuses a crop made in the last 24 h for the same
photo (a saved /me photo, "Another garment"), or does the work itself.

The person photo is uploaded for the parsing model (uploads are bound to a model). A
parsing error, once the client's retries are spent, never fails the try-on: the slot is
left to the model, like a person who wears no such garment, and the caption says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from services.dashscope import DashScopeClient, DashScopeError
from services.dashscope.client import PARSING_MODEL
from services.images.intake import ImageIntake
from services.images.normalize import ImageRejected
from services.model import CROP_LIFETIME, GARMENT_SLOTS, InputImage
from services.storage.crops import CropStore
from services.tryon.ports import FileUnavailable

log = logging.getLogger(__name__)

CROP_MARGIN = 3600.0  # never rely on a crop with less life left than this


class KeptGarments:
    def __init__(
        self,
        intake: ImageIntake,
        client: DashScopeClient,
        crops: CropStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._intake = intake
        self._client = client
        self._crops = crops
        self._clock = clock
        self._in_flight: dict[tuple[str, str], asyncio.Task[tuple[str | None, float]]] = {}
        self._unavailable_logged = False

    def prepare_keep(self, person: InputImage, slot: str) -> None:
        """Starts finding the person's own garment for `slot` in the background."""
        self._start(person, slot)

    async def crop(self, person: InputImage, slot: str) -> tuple[str | None, float]:
        """(crop URL, or None when there is none to keep; when it was made)."""
        return await asyncio.shield(self._start(person, slot))

    def _start(self, person: InputImage, slot: str) -> asyncio.Task[tuple[str | None, float]]:
        if slot not in GARMENT_SLOTS:
            raise ValueError(f"not a garment slot: {slot!r}")
        key = (person.unique_id, slot)
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._find(person, slot), name=f"keep-{slot}")
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return task

    async def _find(self, person: InputImage, slot: str) -> tuple[str | None, float]:
        now = self._clock()
        cached = await self._crops.get(person.unique_id, slot, now - CROP_LIFETIME + CROP_MARGIN)
        if cached is not None:
            return cached
        started = time.monotonic()
        try:
            # The person's upload for the try-on model is no use to the parsing model.
            unbound = replace(person, url=None, url_expires_at=None)
            uploaded = await self._intake.ensure_uploaded(unbound, PARSING_MODEL)
            assert uploaded.url is not None
            url = await self._client.parse(uploaded.url, slot)
        except (DashScopeError, ImageRejected, FileUnavailable) as error:
            self._log_failure(slot, error)
            return None, now  # not remembered: the next try-on asks again
        except Exception:  # a bug here must not cost the user their try-on
            log.exception("kept %s: unexpected error; the model picks", slot)
            return None, now
        await self._crops.prune(now - CROP_LIFETIME)
        await self._crops.remember(person.unique_id, slot, url, now)
        log.info(
            "kept %s: %s in %.2f s",
            slot,
            "found" if url else "none on the person",
            time.monotonic() - started,
        )
        return url, now

    def _log_failure(self, slot: str, error: Exception) -> None:
        if isinstance(error, DashScopeError) and error.kind.name == "SERVICE_UNAVAILABLE":
            if not self._unavailable_logged:
                self._unavailable_logged = True
                log.error(
                    "%s is unavailable to this account (%s): keep mine falls back "
                    "to the model's choice",
                    PARSING_MODEL,
                    error.code,
                )
            return
        log.warning("kept %s: parsing failed (%r); the model picks", slot, error)

    async def forget(self, person: InputImage) -> None:
        """/forget: the crops made from this person photo."""
        await self._crops.forget(person.unique_id)

    async def close(self) -> None:
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
