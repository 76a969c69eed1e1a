"""The operator's hooks into the pipeline's ports, kept small: the Telegram notifier with
account-problem reports and a few metrics, and the upload cache with reuse counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from handlers.admin import AdminTools
from handlers.admin_reports import ACCOUNT
from handlers.batches import BatchNotifier
from handlers.delivery import StatusConfig
from handlers.gateway import TelegramGateway
from handlers.texts import Texts
from services.dashscope import DashScopeError
from services.dashscope.account import explain
from services.metrics import Metrics
from services.model import FailureKind, Job
from services.storage.database import Database
from services.storage.jobs import JobStore
from services.storage.uploads import UploadCache
from services.tryon.features import Features
from services.tryon.ports import Receipt

MODEL_UNAVAILABLE_REPORT_AFTER = 60.0  # seconds of ModelUnavailable before admins hear of it


class OperatorTexts(Texts):
    """The same catalogs; fail_service_unavailable ("… the bot's owner has been notified")
    is only said while an admin really has the report, else fail_service_unavailable_plain."""

    def __init__(self, texts: Texts, notified: Callable[[], bool]) -> None:
        super().__init__(texts.catalogs)
        self._notified = notified

    def template(self, lang: str, key: str, n: int | None = None) -> str:
        if key == "fail_service_unavailable" and not self._notified():
            key = "fail_service_unavailable_plain"
        return super().template(lang, key, n)


class OperatorNotifier(BatchNotifier):
    """The Telegram notifier, plus: an account problem seen by a job is reported to the
    admins, and its user reads "the owner has been notified" (fail_service_unavailable)
    only when an admin really got the report; otherwise fail_service_unavailable_plain."""

    def __init__(
        self,
        gateway: TelegramGateway,
        texts: Texts,
        config: StatusConfig,
        features: Features | None = None,
        *,
        store: JobStore,
        tools: AdminTools,
    ) -> None:
        notified = lambda: tools.reporter.recently_notified(ACCOUNT)  # noqa: E731
        super().__init__(gateway, OperatorTexts(texts, notified), config, features, store=store)
        self._tools = tools
        self._model_unavailable_since: float | None = None

    async def started(self, job: Job) -> Receipt:
        self._tools.metrics.tryons_started.inc()
        return await super().started(job)

    async def deliver(self, job: Job, image: bytes) -> Receipt:
        receipt = await super().deliver(job, image)
        if job.finished_at is not None:
            self._tools.metrics.detection_delay.observe(max(0.0, time.time() - job.finished_at))
        self._model_unavailable_since = None
        return receipt

    async def failed(self, job: Job, kind: FailureKind) -> Receipt:
        if job.error_code == "ModelUnavailable":
            await self._model_unavailable(job)
        if kind is not FailureKind.SERVICE_UNAVAILABLE:
            return await super().failed(job, kind)
        config = self._tools.account.config
        probe = replace(
            explain(job.model, DashScopeError(job.error_code or "Unknown", ""), config.base_url),
            optional=job.model != config.models[0],  # e.g. the refiner: HD only
        )
        if probe.account_problem:
            await self._tools.account.set(probe)
        # The text is chosen by OperatorTexts: "notified" only if an admin got the report.
        return await super().failed(job, kind)

    async def _model_unavailable(self, job: Job) -> None:
        now = time.monotonic()
        if self._model_unavailable_since is None:
            self._model_unavailable_since = now
        elif now - self._model_unavailable_since >= MODEL_UNAVAILABLE_REPORT_AFTER:
            await self._tools.reporter.report(
                ACCOUNT,
                f"model {job.model} has been unavailable (ModelUnavailable) for more than "
                f"{MODEL_UNAVAILABLE_REPORT_AFTER:g} s",
            )


class CountingUploadCache(UploadCache):
    """Counts input images reused from an earlier upload vs uploaded anew."""

    def __init__(self, db: Database, metrics: Metrics) -> None:
        super().__init__(db)
        self._metrics = metrics

    async def get(self, model: str, unique_id: str, valid_after: float) -> tuple[str, float] | None:
        found = await super().get(model, unique_id, valid_after)
        if found is not None:
            self._metrics.uploads.labels("reused").inc()
        return found

    async def remember(self, model: str, unique_id: str, url: str, expires_at: float) -> None:
        self._metrics.uploads.labels("new").inc()
        await super().remember(model, unique_id, url, expires_at)
