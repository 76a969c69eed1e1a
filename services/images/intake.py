"""A user's file → image check → DashScope temporary storage, for one input image.

Two entry points, one per side of the try-on:
- `accept(image)`: the conversation, as each photo arrives. A bad photo is refused at
  once (ImageRejected), a good one starts uploading in the background, so the final
  submit only waits for the last image.
- `ensure_uploaded(image)`: the pipeline's first step. It joins that background upload
  (single flight per Telegram file), reuses an upload made for the same file and model,
  or does the whole download → check → upload itself (after a restart, or when an
  upload aged while the job waited in line).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
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
RECENT_UPLOADS = 1000


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

    def __init__(self, client: DashScopeClient) -> None:
        self._client = client
        self._policy: UploadPolicy | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> UploadPolicy:
        async with self._lock:
            if self._policy is None or not self._policy.valid_for(30.0):
                self._policy = await self._client.get_upload_policy()
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
        self._policies = PolicyCache(client)
        # Bounds the images held in memory at once (download + decode), whatever the load:
        # at most decode_slots downloaded files, and decoding within the byte budget (by
        # default what one image may take at most, so two big ones take turns).
        self._decode_gate = asyncio.Semaphore(decode_slots)
        self.budget = DecodeBudget(decode_budget or limits.max_decoded_bytes)
        self._in_flight: dict[str, asyncio.Future[InputImage]] = {}
        # Uploads just made, by Telegram file: what the uploads table holds, without a
        # read that could miss one finishing at this very moment.
        self._recent: dict[str, InputImage] = {}
        self._background: set[asyncio.Task[InputImage]] = set()
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
        if (recent := self._recent_upload(image)) is not None:
            return recent
        self._upload_in_background(image, checked)
        return image

    async def _reuse(self, image: InputImage) -> InputImage | None:
        """The image with its upload, when this Telegram file was already uploaded (and so
        checked) for the model and the upload is still good: nothing to download."""
        if self.usable(image):
            return image
        if (recent := self._recent_upload(image)) is not None:
            return recent
        cached = await self._uploads.get(
            self._model, image.unique_id, self._clock() + UPLOAD_MARGIN
        )
        return replace(image, url=cached[0], url_expires_at=cached[1]) if cached else None

    def _recent_upload(self, image: InputImage) -> InputImage | None:
        recent = self._recent.get(image.unique_id)
        if recent is None or not self.usable(recent):
            return None
        return replace(image, url=recent.url, url_expires_at=recent.url_expires_at)

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
        if image.unique_id in self._in_flight:
            return
        task = asyncio.create_task(self._single_flight(image, self._upload_checked(image, checked)))
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

    async def ensure_uploaded(self, image: InputImage) -> InputImage:
        """Returns the image with a usable oss:// URL; raises ImageRejected or DashScopeError."""
        if self.usable(image):
            return image
        reused = await self._reuse(image)
        if reused is not None:
            return reused
        # Single flight: ten group members trying on one garment upload it once.
        while (pending := self._in_flight.get(image.unique_id)) is not None:
            try:
                shared = await asyncio.shield(pending)
            except asyncio.CancelledError:
                if pending.cancelled():
                    continue  # the uploader was cancelled (shutdown): take over
                raise
            except (DashScopeError, ImageRejected):
                break  # a background upload failed: try again here
            return replace(image, url=shared.url, url_expires_at=shared.url_expires_at)
        # One may have finished while the uploads table was being read.
        return self._recent_upload(image) or await self._single_flight(
            image, self._download_check_upload(image)
        )

    async def _single_flight(
        self, image: InputImage, work: Coroutine[Any, Any, InputImage]
    ) -> InputImage:
        future: asyncio.Future[InputImage] = asyncio.get_running_loop().create_future()
        self._in_flight[image.unique_id] = future
        try:
            prepared = await work
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._in_flight[image.unique_id]
        self._recent[image.unique_id] = prepared
        while len(self._recent) > RECENT_UPLOADS:
            del self._recent[next(iter(self._recent))]
        future.set_result(prepared)
        return prepared

    async def _download_check_upload(self, image: InputImage) -> InputImage:
        return await self._upload_checked(image, await self._check(image))

    async def _upload_checked(self, image: InputImage, checked: NormalizedImage) -> InputImage:
        started = self._clock()
        url = await self._upload(checked.data)
        expires = started + UPLOAD_LIFETIME
        await self._uploads.remember(self._model, image.unique_id, url, expires)
        return replace(image, url=url, url_expires_at=expires)

    async def _upload(self, data: bytes) -> str:
        policy = await self._policies.get()
        try:
            url = await self._client.upload(policy, data, "image.jpg")
        except DashScopeError as error:
            if error.kind is not ErrorKind.POLICY_EXPIRED:
                raise
            self._policies.discard(policy)
            url = await self._client.upload(await self._policies.get(), data, "image.jpg")
        return url
