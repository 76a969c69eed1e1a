"""Fixtures: the two test doubles on 127.0.0.1 and the real bot running against them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram.ext import Application

from bot.settings import Settings
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram
from tests.harness import make_settings, running_bot


class FakeClock:
    """A wall clock the test moves by hand (for expiry: policies, uploads, results)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDashScope]:
    """A very fast DashScope double on a hand-moved clock, for the client's own tests."""
    async with FakeDashScope(pending_seconds=0.01, running_seconds=0.03, clock=clock) as double:
        yield double


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def ds() -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope(pending_seconds=0.02, running_seconds=0.1) as fake:
        yield fake


@pytest.fixture
def settings(tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path) -> Settings:
    return make_settings(tg.base_url, ds.base_url, tmp_path / "data")


@pytest.fixture
async def bot(settings: Settings) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    async with running_bot(settings) as app:
        yield app
