"""The operator's view: Prometheus metrics (one registry object per Application, no module
globals, created in build_application and handed to whoever records something) and the
heartbeats /healthz reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
STALE_AFTER = 90.0


class Metrics:
    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        self.updates = Counter(
            "tryon_updates", "Telegram updates received, by type", ["type"], registry=registry
        )
        self.tryons = Counter(
            "tryon_tryons",
            "Try-ons finished, by outcome (delivered, failed, canceled, interrupted) and kind",
            ["outcome", "failure_kind"],
            registry=registry,
        )
        self.tryons_started = Counter(
            "tryon_tryons_started", "Try-ons started (submit intent recorded)", registry=registry
        )
        self.queue_length = Gauge(
            "tryon_queue_length", "Try-ons waiting for a DashScope slot", registry=registry
        )
        self.slots_in_use = Gauge(
            "tryon_slots_in_use", "DashScope task slots in use", registry=registry
        )
        self.task_duration = Histogram(
            "tryon_task_duration_seconds",
            "Time from the last input to the result being sent",
            buckets=(5, 10, 15, 20, 25, 30, 45, 60, 90, 120, 300, 600),
            registry=registry,
        )
        self.detection_delay = Histogram(
            "tryon_detection_delay_seconds",
            "Time from the task being done at DashScope to the result being sent",
            buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=registry,
        )
        self.dashscope_requests = Counter(
            "tryon_dashscope_requests",
            "DashScope/OSS HTTP requests by endpoint and status (0: no answer)",
            ["endpoint", "status"],
            registry=registry,
        )
        self.telegram_errors = Counter(
            "tryon_telegram_errors",
            "Bot API calls that failed, by method and error code (429: flood control)",
            ["method", "code"],
            registry=registry,
        )
        self.uploads = Counter(
            "tryon_uploads",
            "Input images for try-ons: uploaded anew or reused from the cache",
            ["kind"],
            registry=registry,
        )
        self.spend = Counter(
            "tryon_spend_estimate_yuan",
            "Estimated spend in ¥ (TRYON_PRICES), by model",
            ["model"],
            registry=registry,
        )
        self.admin_reports = Counter(
            "tryon_admin_reports", "Reports sent to admins, by kind", ["kind"], registry=registry
        )

    def track_scheduler(self, waiting: Callable[[], int], running: Callable[[], int]) -> None:
        self.queue_length.set_function(lambda: float(waiting()))
        self.slots_in_use.set_function(lambda: float(running()))

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class Health:
    """Heartbeats, on a monotonic clock tests may replace."""

    clock: Callable[[], float] = time.monotonic
    stale_after: float = STALE_AFTER
    last_loop: float | None = None  # an update arrived or a poll completed
    dashscope_asked: float | None = None  # the last request that got no answer
    dashscope_answered: float | None = None
    account_problem: str | None = None  # set while DashScope refuses the account
    notes: dict[str, Any] = field(default_factory=dict)

    def beat(self) -> None:
        self.last_loop = self.clock()

    def dashscope(self, status: int) -> None:
        if status:
            self.dashscope_answered = self.clock()
        else:
            self.dashscope_asked = self.clock()

    def loop_problem(self) -> str | None:
        now = self.clock()
        if self.last_loop is None or now - self.last_loop > self.stale_after:
            return f"no update or poll completed in the last {self.stale_after:g} s"
        return None

    def dashscope_problem(self) -> str | None:
        """DashScope answered recently, or nothing was asked since its last answer."""
        if self.dashscope_asked is None:
            return None
        if self.dashscope_answered is not None and self.dashscope_answered >= self.dashscope_asked:
            return None
        last = self.dashscope_answered
        if last is not None and self.clock() - last <= self.stale_after:
            return None
        return f"DashScope has not answered for {self.stale_after:g} s (network?)"
