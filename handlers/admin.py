"""Admin features (TRYON_ADMIN_IDS): /stats with a chart, the admin command menu, and the
operator's view of every update (metrics, heartbeat). Non-admins never see any of it: for
them /stats is an unknown command like any other."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont
from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationHandlerStop, CommandHandler, TypeHandler, filters

from handlers.admin_reports import BUDGET_80, BUDGET_100, GIVEN_UP, AdminReporter
from handlers.context import Context
from handlers.language import MENU_LANGUAGES, PRIVATE_COMMANDS, commands, menu_code
from handlers.texts import Texts
from services.dashscope.account import AccountWatch
from services.metrics import Health, Metrics
from services.model import utc_day
from services.storage.stats import DayCounts, PeriodStats, StatsStore, day_range

log = logging.getLogger(__name__)

ADMIN_KEY = "admin"
OBSERVE_GROUP = -3  # before the bursts (-2) and the guards (-1): every update counts
# In the guards' group, registered before the guard: an admin's /stats in private is
# handled there (and stops), so the guard, and everything after it, never sees it.
ADMIN_GROUP = -1
ADMIN_COMMANDS = ("stats",)
ADMIN_COMMAND_TEXT = {
    "stats": {"en": "Usage and spend (admins)", "zh-hans": "用量与花费（管理员）"}
}


@dataclass(frozen=True)
class AdminConfig:
    """The settings the admin features need (bot.settings builds it)."""

    admin_ids: frozenset[int]
    prices: dict[str, float]
    max_concurrent: int
    daily_budget: int
    task_deadline: float


@dataclass
class AdminTools:
    config: AdminConfig
    reporter: AdminReporter
    account: AccountWatch
    stats: StatsStore
    metrics: Metrics
    health: Health

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.config.admin_ids


def admin_tools(context: Context) -> AdminTools:
    tools: AdminTools = context.bot_data[ADMIN_KEY]
    return tools


# -- /stats -------------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"¥{value:.2f}" if value >= 0.1 or value == 0 else f"¥{value:.3f}"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def format_period(title: str, stats: PeriodStats, prices: dict[str, float]) -> list[str]:
    rate = stats.success_rate
    lines = [
        f"<b>{title}</b> ({stats.first_day}"
        + (f" – {stats.last_day})" if stats.first_day != stats.last_day else ")"),
        f"users {stats.users}, try-ons started {stats.started}, delivered {stats.delivered}, "
        f"failed {stats.failed}, canceled {stats.canceled}",
        "success rate " + ("–" if rate is None else f"{rate * 100:.1f} %"),
        f"last input → result p50 {_seconds(stats.percentile(50))}, "
        f"p95 {_seconds(stats.percentile(95))}",
    ]
    if stats.failed_by_kind:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.failed_by_kind.items()))
        lines.append(f"failed by kind: {kinds}")
    spend = stats.spend(prices)
    if spend:
        parts = ", ".join(
            f"{m} {stats.results_by_model[m]} × {_money(prices.get(m, 0))} = {_money(v)}"
            for m, v in spend.items()
        )
        lines.append(f"spend estimate {_money(sum(spend.values()))} ({parts})")
    else:
        lines.append("spend estimate ¥0.00")
    return lines


async def stats_text(context: Context, now: float | None = None) -> tuple[str, list[DayCounts]]:
    tools = admin_tools(context)
    svc = context.services
    prices = tools.config.prices
    today = utc_day(time.time() if now is None else now)
    first, _ = day_range(today, 30)
    lines = format_period("Today", await tools.stats.period(today, today), prices)
    lines.append("")
    lines += format_period("Last 30 days", await tools.stats.period(first, today), prices)
    lines.append("")
    lines.append(
        f"now: {svc.scheduler.waiting} waiting, {svc.scheduler.running} of "
        f"{tools.config.max_concurrent} slots in use"
    )
    budget = tools.config.daily_budget
    used = await svc.store.count_used(today)
    lines.append(
        f"daily budget: {used} of {budget} used ({used / budget * 100:.0f} %)"
        if budget
        else f"daily budget: off ({used} today)"
    )
    if tools.account.problem is not None:
        lines.append(f"⚠️ DashScope: {tools.account.problem.line}")
    return "\n".join(lines), await tools.stats.per_day(first, today)


COLORS = {
    "delivered": (46, 160, 67),
    "failed": (207, 34, 46),
    "canceled": (140, 140, 140),
    "other": (84, 130, 230),
}


def render_chart(days: list[DayCounts]) -> bytes:
    """Try-ons per day for the last 30 days, stacked by outcome (PNG)."""
    width, height, left, bottom, top = 900, 360, 50, 40, 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    peak = max([d.total for d in days] + [1])
    plot_w, plot_h = width - left - 20, height - top - bottom
    bar_w = plot_w / max(len(days), 1)
    draw.line((left, top, left, top + plot_h), fill="black")
    draw.line((left, top + plot_h, left + plot_w, top + plot_h), fill="black")
    for tick in (0, peak // 2, peak):
        y = top + plot_h - tick / peak * plot_h
        draw.text((5, y - 6), str(tick), fill="black", font=font)
        draw.line((left - 3, y, left, y), fill="black")
    for index, day in enumerate(days):
        x0 = left + index * bar_w + 2
        y = top + plot_h
        for outcome in ("delivered", "failed", "canceled", "other"):
            count = getattr(day, outcome)
            if not count:
                continue
            h = count / peak * plot_h
            draw.rectangle((x0, y - h, x0 + bar_w - 4, y), fill=COLORS[outcome])
            y -= h
        if index % 5 == 0 or index == len(days) - 1:
            draw.text((x0, top + plot_h + 5), day.day[5:], fill="black", font=font)
    x = left
    draw.text((left, 10), "Try-ons per day (UTC), last 30 days:", fill="black", font=font)
    x = left + 250
    for outcome, color in COLORS.items():
        draw.rectangle((x, 12, x + 10, 22), fill=color)
        draw.text((x + 14, 10), outcome, fill="black", font=font)
        x += 90
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def on_stats(update: Update, context: Context) -> None:
    chat = update.effective_chat
    assert chat is not None
    text, days = await stats_text(context)
    await context.bot.send_message(chat.id, text, parse_mode=ParseMode.HTML)
    try:
        await context.bot.send_photo(chat.id, render_chart(days), caption="Try-ons per day")
    except TelegramError as error:
        log.warning("Could not send the stats chart: %s", error)
    raise ApplicationHandlerStop


# -- every update -------------------------------------------------------------------------


async def observe(update: Update, context: Context) -> None:
    tools: AdminTools | None = context.bot_data.get(ADMIN_KEY)
    if tools is None:
        return
    kind = next(
        (name for name in ("message", "edited_message", "callback_query") if getattr(update, name)),
        "other",
    )
    tools.metrics.updates.labels(kind).inc()
    tools.health.beat()


# -- wiring -------------------------------------------------------------------------------


def register(application: Application, admin_ids: frozenset[int]) -> None:  # type: ignore[type-arg]
    application.add_handler(TypeHandler(Update, observe), group=OBSERVE_GROUP)
    if admin_ids:
        admins = filters.User(user_id=list(admin_ids)) & filters.ChatType.PRIVATE
        application.add_handler(
            CommandHandler("stats", on_stats, filters=admins & filters.UpdateType.MESSAGE),
            group=ADMIN_GROUP,
        )


async def set_admin_commands(
    application: Application,  # type: ignore[type-arg]
    texts: Texts,
    admin_ids: frozenset[int],
) -> None:
    """The admins' private chats get the admin commands too (scope: that chat only)."""
    for admin in sorted(admin_ids):
        for lang in MENU_LANGUAGES:
            menu = commands(texts, lang, PRIVATE_COMMANDS)
            description = ADMIN_COMMAND_TEXT["stats"]
            menu += [
                BotCommand(n, description.get(lang, description["en"])) for n in ADMIN_COMMANDS
            ]
            try:
                await application.bot.set_my_commands(
                    menu, scope=BotCommandScopeChat(admin), language_code=menu_code(lang)
                )
            except TelegramError as error:
                # Telegram refuses a chat scope until the admin has opened the bot once.
                log.warning("Could not set the admin menu for %s: %s", admin, error)
                break


# -- outcomes: metrics, budget and given-up reports -----------------------------------------

FINAL_STATES = ("delivered", "failed", "canceled", "interrupted")
GIVEN_UP_KINDS = ("timeout",)
LOOKBACK = 60.0  # seconds: a job's final write may commit after a later-stamped one


class JobWatcher:
    """Follows the jobs table (the pipeline's record of every outcome) for the operator:
    outcome counters, durations and spend for /metrics, the daily budget at 80 % and
    100 %, and try-ons given up. Reading the table keeps the pipeline free of hooks."""

    def __init__(
        self,
        tools: AdminTools,
        count_billable: Callable[[str], Awaitable[int]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tools = tools
        self._count_billable = count_billable
        self._clock = clock
        self._cursor = clock()
        # Jobs already counted, by id: a write stamped earlier may commit later, so each
        # round looks back LOOKBACK seconds and skips what it has seen.
        self._counted: dict[str, float] = {}
        self._budget_reported: set[tuple[str, int]] = set()

    async def step(self) -> None:
        db = self._tools.stats.db
        marks = ", ".join("?" for _ in FINAL_STATES)
        rows = await db.fetchall(
            f"SELECT id, state, error_kind, model, created_at, delivered_at, result_url, "
            f"updated_at FROM jobs WHERE updated_at > ? AND state IN ({marks}) "
            f"ORDER BY updated_at",
            (self._cursor - LOOKBACK, *FINAL_STATES),
        )
        metrics = self._tools.metrics
        prices = self._tools.config.prices
        for row in rows:
            if row["id"] in self._counted:
                continue
            self._counted[str(row["id"])] = float(row["updated_at"])
            self._cursor = max(self._cursor, float(row["updated_at"]))
            state, kind = str(row["state"]), str(row["error_kind"] or "")
            metrics.tryons.labels(state, kind if state != "delivered" else "").inc()
            if row["result_url"]:
                metrics.spend.labels(str(row["model"])).inc(prices.get(str(row["model"]), 0.0))
            if state == "delivered" and row["delivered_at"] is not None:
                metrics.task_duration.observe(float(row["delivered_at"]) - float(row["created_at"]))
            if state == "failed" and kind in GIVEN_UP_KINDS:
                await self._tools.reporter.report(
                    GIVEN_UP,
                    f"job {row['id']} was given up after TRYON_TASK_DEADLINE "
                    f"({self._tools.config.task_deadline:g} s) without a result",
                )
        horizon = self._cursor - LOOKBACK
        self._counted = {k: v for k, v in self._counted.items() if v >= horizon}
        await self._check_budget()

    async def _check_budget(self) -> None:
        budget = self._tools.config.daily_budget
        if not budget:
            return
        day = utc_day(self._clock())
        used = await self._count_billable(day)
        for percent, kind in ((80, BUDGET_80), (100, BUDGET_100)):
            if used * 100 >= budget * percent and (day, percent) not in self._budget_reported:
                self._budget_reported.add((day, percent))
                await self._tools.reporter.report(
                    kind,
                    f"{used} of today's {budget} try-ons used ({day}, TRYON_DAILY_BUDGET)"
                    + ("; new try-ons are refused until 00:00 UTC" if percent == 100 else ""),
                )

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.step()
            except Exception as error:  # keep watching; the next round retries
                log.warning("Job watcher: %r", error)
