"""A user's file → image check → DashScope temporary storage, for one input image.

Two entry points, one per side of the try-on:
- `accept(image)`: the conversation, as each photo arrives. A bad photo is refused at
  once (ImageRejected), a good one starts uploading in the background, so the final
  submit only waits for the last image.
- `ensure_uploaded(image)`: the pipeline's first step. It joins that background upload
  (single flight per Telegram file), reuses an upload made for the same file and model,
  or does the whole download → check → upload itself (after a restart, or when an
  upload aged while the job waited in line).

Uploads are bound to a model (a file uploaded for aitryon-plus is refused by the parsing
model and the refiner): `ensure_uploaded(image, model=…)` uploads for another model than
the try-on's, with its own credential, single flight and cache entries.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from services.dashscope import DashScopeClient, DashScopeError, ErrorKind, UploadPolicy
from services.images.normalize import (
    ImageLimits,
    ImageRejected,
    NormalizedImage,
    RejectReason,
    check_file_size,
    decode_cost,
    normalize,
    sniff_is_image,
)
from services.model import InputImage
from services.storage.uploads import UploadCache
from services.tryon.ports import FileSource

log = logging.getLogger(__name__)

UPLOAD_LIFETIME = 48 * 3600.0  # DashScope deletes temporary files after 48 h
UPLOAD_MARGIN = 2 * 3600.0  # never rely on an upload with less life left than this
RECENT_UPLOADS = 256


class DecodeBudget:
    """The memory image checks may take at once, in (estimated) bytes, shared by all checks.

    A check reserves what :func:`decode_cost` says its image needs, from the header, before
    decoding it, and waits while the others hold too much; waiters are served in order, so a
    big image is not overtaken forever by small ones. A reservation larger than the whole
    budget is capped to it (it then runs alone).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, amount: int) -> int:
        """Waits until ``amount`` (capped to the capacity) is free and takes it; returns
        what was taken, to give back with :meth:`release`."""
        amount = max(0, min(amount, self.capacity))
        if not self._waiters and self.in_use + amount <= self.capacity:
            self._take(amount)
            return amount
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(amount)  # granted just as we were cancelled
            else:
                self._waiters.remove(entry)
                self._wake()  # we may have been blocking smaller ones behind us
            raise
        return amount

    def release(self, amount: int) -> None:
        self.in_use -= amount
        self._wake()

    def _take(self, amount: int) -> None:
        self.in_use += amount
        self.peak = max(self.peak, self.in_use)

    def _wake(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            amount, waiter = self._waiters.popleft()
            if not waiter.done():
                self._take(amount)
                waiter.set_result(None)


class PolicyCache:
    """One upload credential shared by all uploads while it is valid (keys are unique)."""

    def __init__(self, client: DashScopeClient, model: str | None = None) -> None:
        self._client = client
        self._model = model
        self._policy: UploadPolicy | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> UploadPolicy:
        async with self._lock:
            if self._policy is None or not self._policy.valid_for(30.0):
                self._policy = await self._client.get_upload_policy(self._model)
            return self._policy

    def discard(self, policy: UploadPolicy) -> None:
        if self._policy is policy:
            self._policy = None


class ImageIntake:
    def __init__(
        self,
        files: FileSource,
        client: DashScopeClient,
        uploads: UploadCache,
        *,
        model: str,
        limits: ImageLimits,
        decode_slots: int = 2,
        decode_budget: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._files = files
        self._client = client
        self._uploads = uploads
        self._model = model
        self._limits = limits
        self._policies = {model: PolicyCache(client, model)}
        # Bounds the images held in memory at once (download + decode), whatever the load:
        # at most decode_slots downloaded files, and decoding within the byte budget (by
        # default what one image may take at most, so two big ones take turns).
        self._decode_gate = asyncio.Semaphore(decode_slots)
        self.budget = DecodeBudget(decode_budget or limits.max_decoded_bytes)
        self._in_flight: dict[tuple[str, str], asyncio.Future[InputImage]] = {}
        self._background: set[asyncio.Task[InputImage]] = set()
        # The last uploads made here: a caller that missed the cache while an upload was
        # finishing (and so found it no longer in flight) still gets it, not a second one.
        self._recent: OrderedDict[tuple[str, str], InputImage] = OrderedDict()
        self._clock = clock

    def usable(self, image: InputImage) -> bool:
        expires = image.url_expires_at
        return (
            image.url is not None
            and expires is not None
            and expires > (self._clock() + UPLOAD_MARGIN)
        )

    async def accept(self, image: InputImage) -> InputImage:
        """Checks a photo the user just sent and starts its upload in the background.

        Returns the image, with its upload when this file was already uploaded (and so
        checked) for the model; raises ImageRejected with a reason to show the user.
        """
        reused = await self._reuse(image)
        if reused is not None:
            return reused  # a garment the group already tried on
        checked = await self._check(image)
        # Another member's copy of this file may have been uploaded while this one was
        # being checked: upload once.
        recent = self._recent.get((self._model, image.unique_id))
        if recent is not None and self.usable(recent):
            return replace(image, url=recent.url, url_expires_at=recent.url_expires_at)
        self._upload_in_background(image, checked)
        return image

    async def _reuse(self, image: InputImage, model: str | None = None) -> InputImage | None:
        """The image with its upload, when this Telegram file was already uploaded (and so
        checked) for the model and the upload is still good: nothing to download."""
        if self.usable(image):
            return image
        cached = await self._uploads.get(
            model or self._model, image.unique_id, self._clock() + UPLOAD_MARGIN
        )
        return replace(image, url=cached[0], url_expires_at=cached[1]) if cached else None

    async def _check(self, image: InputImage) -> NormalizedImage:
        """Downloads and checks one image; raises ImageRejected with a reason to show."""
        check_file_size(image.file_size)
        async with self._decode_gate:
            data = await self._files.download(image.file_id)
            check_file_size(len(data))
            if not sniff_is_image(data[:64]):
                raise ImageRejected(RejectReason.UNSUPPORTED_FORMAT)
            # From the header: refuses what would take too much memory, before decoding.
            cost = await asyncio.to_thread(decode_cost, data, self._limits)
            reserved = await self.budget.acquire(cost)
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(None, functools.partial(normalize, data, self._limits))
            # The reservation is given back when the decode ends, even if this task is
            # cancelled meanwhile (a worker thread cannot be stopped).
            work.add_done_callback(functools.partial(self._decoded, reserved))
            return await asyncio.shield(work)

    def _decoded(self, reserved: int, work: asyncio.Future[NormalizedImage]) -> None:
        self.budget.release(reserved)
        if not work.cancelled():
            work.exception()  # mark retrieved: the checker, if still waiting, re-raises it

    def _upload_in_background(self, image: InputImage, checked: NormalizedImage) -> None:
        key = (self._model, image.unique_id)
        if key in self._in_flight:
            return
        task = asyncio.create_task(self._single_flight(key, self._upload_checked(image, checked)))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[InputImage]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("Background upload failed (the try-on will retry): %r", error)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background))

    async def ensure_uploaded(self, image: InputImage, model: str | None = None) -> InputImage:
        """Returns the image with a usable oss:// URL for `model` (the try-on's by default;
        the image's own URL must be one made for that model); raises ImageRejected or
        DashScopeError."""
        model = model or self._model
        if self.usable(image):
            return image
        reused = await self._reuse(image, model)
        if reused is not None:
            return reused
        key = (model, image.unique_id)
        # Single flight: ten group members trying on one garment upload it once.
        while (pending := self._in_flight.get(key)) is not None:
            try:
                shared = await asyncio.shield(pending)
            except asyncio.CancelledError:
                if pending.cancelled():
                    continue  # the uploader was cancelled (shutdown): take over
                raise
            except (DashScopeError, ImageRejected):
                break  # a background upload failed: try again here
            return replace(image, url=shared.url, url_expires_at=shared.url_expires_at)
        recent = self._recent.get(key)
        if recent is not None and self.usable(recent):
            return replace(image, url=recent.url, url_expires_at=recent.url_expires_at)
        return await self._single_flight(key, self._download_check_upload(image, model))

    async def refresh(self, image: InputImage, model: str | None = None) -> InputImage:
        """A new upload of the image, whatever the cache says (DashScope could not fetch
        the old one: it expired or vanished early)."""
        model = model or self._model
        stale = replace(image, url=None, url_expires_at=None)
        self._recent.pop((model, image.unique_id), None)
        return await self._single_flight(
            (model, image.unique_id), self._download_check_upload(stale, model)
        )

    async def _single_flight(
        self, key: tuple[str, str], work: Coroutine[Any, Any, InputImage]
    ) -> InputImage:
        future: asyncio.Future[InputImage] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            prepared = await work
            self._recent[key] = prepared
            if len(self._recent) > RECENT_UPLOADS:
                self._recent.popitem(last=False)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._in_flight[key]
        future.set_result(prepared)
        return prepared

    async def _download_check_upload(self, image: InputImage, model: str) -> InputImage:
        return await self._upload_checked(image, await self._check(image), model)

    async def _upload_checked(
        self, image: InputImage, checked: NormalizedImage, model: str | None = None
    ) -> InputImage:
        model = model or self._model
        started = self._clock()
        url = await self._upload(checked.data, model)
        expires = started + UPLOAD_LIFETIME
        await self._uploads.remember(model, image.unique_id, url, expires)
        return replace(image, url=url, url_expires_at=expires)

    async def _upload(self, data: bytes, model: str) -> str:
        policies = self._policies.get(model)
        if policies is None:
            policies = self._policies[model] = PolicyCache(self._client, model)
        policy = await policies.get()
        try:
            url = await self._client.upload(policy, data, "image.jpg")
        except DashScopeError as error:
            if error.kind is not ErrorKind.POLICY_EXPIRED:
                raise
            policies.discard(policy)
            url = await self._client.upload(await policies.get(), data, "image.jpg")
        return url
