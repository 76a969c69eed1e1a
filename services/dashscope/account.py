"""Is the DashScope account usable? A free getPolicy per model, told apart into a wrong key,
a wrong region/base URL, arrears, a model not activated, or the network. Used by `check`,
at start-up, and again before refusing users while a problem is known."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import aiohttp

from services.dashscope.client import DashScopeClient
from services.dashscope.errors import DashScopeError
from services.retry import RetryPolicy

log = logging.getLogger(__name__)

BEIJING = "https://dashscope.aliyuncs.com/api/v1"
RECHECK_AFTER = 60.0  # seconds: a known problem is checked again before refusing a user

# Problem classes that only the operator can fix (a report to the admins).
ACCOUNT_PROBLEMS = frozenset({"key", "region", "arrears", "model", "access"})


@dataclass(frozen=True)
class Probe:
    model: str
    problem: str | None  # None: fine; else key/region/arrears/model/access/network/server
    line: str  # what it means and the fix
    optional: bool = False  # a model only some features need (parsing, refiner)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def account_problem(self) -> bool:
        """A problem that stops every try-on: the whole account's, or the try-on model's."""
        if self.optional and self.problem in ("model", "access"):
            return False
        return self.problem in ACCOUNT_PROBLEMS


def explain(model: str, error: DashScopeError, base_url: str) -> Probe:
    code, status = error.code, error.http_status
    if status == 404 or (code == "Unknown" and status is None and "404" in error.message):
        return Probe(
            model,
            "region",
            f"DASHSCOPE_HTTP_BASE_URL {base_url} answers 404 (wrong region or path): try-on "
            f"exists only in China (Beijing), use {BEIJING}",
        )
    if code == "InvalidApiKey" or status == 401:
        hint = (
            " (this base URL is not Beijing's, and keys are region-bound)"
            if base_url.rstrip("/") != BEIJING
            else ""
        )
        return Probe(
            model,
            "key",
            f"DashScope rejects DASHSCOPE_API_KEY (InvalidApiKey){hint}: copy a China (Beijing) "
            f"key from the Model Studio console (API-KEY page)",
        )
    if code == "Arrearage":
        return Probe(
            model,
            "arrears",
            "the Alibaba Cloud account is in arrears (Arrearage): top it up in the billing "
            "console; try-ons resume by themselves",
        )
    if code in ("AccessDenied.Unpurchased", "Model.AccessDenied", "ModelNotFound") or (
        code == "InvalidParameter" and "Model not exist" in error.message
    ):
        return Probe(
            model,
            "model",
            f"model {model} is not activated for this key ({code}): activate it in the Model "
            f"Studio console (for a sub-workspace key, grant the workspace access to {model})",
        )
    if code.startswith("AccessDenied") or status == 403:
        return Probe(
            model,
            "access",
            f"DashScope denies access ({code}: {error.message}): check the key's workspace "
            f"permissions in the Model Studio console",
        )
    if code in ("NetworkError", "RequestTimeout"):
        return Probe(
            model,
            "network",
            f"DashScope is unreachable at {base_url} ({error.message}): check the network, "
            f"DNS or a proxy",
        )
    return Probe(model, "server", f"DashScope answered {error}: try again later")


@dataclass(frozen=True)
class AccountConfig:
    api_key: str = field(repr=False)
    base_url: str
    models: tuple[str, ...]  # every model the bot will use; the first one is required
    request_timeout: float = 15.0


async def probe_model(
    session: aiohttp.ClientSession, config: AccountConfig, model: str, *, optional: bool = False
) -> Probe:
    client = DashScopeClient(
        session,
        api_key=config.api_key,
        base_url=config.base_url,
        model=model,
        retry=RetryPolicy(attempts=1),
        request_timeout=min(config.request_timeout, 15.0),
    )
    try:
        await client.get_upload_policy()
    except DashScopeError as error:
        return replace(explain(model, error, config.base_url), optional=optional)
    return Probe(model, None, f"DashScope key accepted, model {model} available", optional)


async def probe_all(config: AccountConfig) -> list[Probe]:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return [
            await probe_model(session, config, model, optional=index > 0)
            for index, model in enumerate(config.models)
        ]


class AccountWatch:
    """The account's state as the bot last saw it. A problem makes users get "service
    unavailable" at once (no silence, no paid attempt); it is checked again, for free,
    before refusing someone once RECHECK_AFTER has passed."""

    def __init__(
        self,
        config: AccountConfig,
        on_problem: Callable[[Probe], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._on_problem = on_problem
        self._clock = clock
        self.problem: Probe | None = None
        self.checked_at: float | None = None

    async def verify(self) -> Probe | None:
        """getPolicy for each model; returns the first account problem (None: usable)."""
        probes = await probe_all(self.config)
        self.checked_at = self._clock()
        found = next((p for p in probes if p.account_problem), None)
        for probe in probes:
            if probe.problem == "network" or (probe.problem and not probe.account_problem):
                log.warning("DashScope check: %s", probe.line)
        await self.set(found)
        return found

    async def set(self, probe: Probe | None) -> None:
        previous, self.problem = self.problem, probe
        if probe is None:
            if previous is not None:
                log.info("DashScope account usable again (%s)", previous.problem)
            return
        log.error("DashScope account problem: %s", probe.line)
        await self._on_problem(probe)

    async def usable(self) -> bool:
        """False while an account problem is known (re-checked after RECHECK_AFTER)."""
        if self.problem is None:
            return True
        if self.checked_at is None or self._clock() - self.checked_at >= RECHECK_AFTER:
            try:
                await self.verify()
            except Exception as error:  # the check itself failed: keep what we knew
                log.warning("DashScope re-check failed: %r", error)
        return self.problem is None
