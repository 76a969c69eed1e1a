import asyncio
import datetime as dtm
import time
from typing import Any

import pytest
from telegram import Chat, Message, Update, User
from telegram.error import Forbidden, RetryAfter

from handlers.gateway import (
    GROUP_RESERVE,
    ChatBudget,
    ChatUnreachable,
    SendRate,
    TelegramGateway,
    Urgency,
)
from handlers.ordering import PerUserOrderedProcessor


def test_group_budget_keeps_a_reserve_for_results_and_prompts() -> None:
    budget = ChatBudget(per_minute=20, window=60.0)
    group = -100
    for _ in range(20 - GROUP_RESERVE):
        assert budget.can_spend(group)
        budget.record(group)
    assert not budget.can_spend(group)  # status edits stop here…
    assert budget.can_spend(group, reserve=0)  # …while essential sends still fit


def test_private_chats_are_not_counted_but_flood_waits_apply() -> None:
    budget = ChatBudget()
    for _ in range(100):
        budget.record(42)
    assert budget.can_spend(42)
    budget.block(42, 30)
    assert not budget.can_spend(42) and budget.blocked_for(42) > 29


def test_the_window_slides() -> None:
    budget = ChatBudget(per_minute=3, window=0.0)
    for _ in range(10):
        budget.record(-1)
    assert budget.can_spend(-1, reserve=0)  # everything recorded has already left the window


# ---- bounded state, overall rate, never waiting in handlers, unreachable chats -------------


def test_idle_chats_are_pruned() -> None:
    budget = ChatBudget(window=0.0)
    for chat in range(-1, -1001, -1):
        budget.record(chat)
        budget.block(chat, 0.0)
    budget.prune()
    assert budget.tracked_chats() == 0


async def test_the_overall_rate_serves_the_most_urgent_first() -> None:
    rate = SendRate(per_second=2, window=0.2)
    await rate.take()
    await rate.take()
    order: list[str] = []

    async def take(name: str, urgency: Urgency) -> None:
        await rate.take(urgency)
        order.append(name)

    await asyncio.gather(
        take("status", Urgency.COURTESY),
        take("hint", Urgency.NOTICE),
        take("result", Urgency.MUST),
        take("prompt", Urgency.MUST),
    )
    assert order == ["result", "prompt", "hint", "status"]


class StubBot:
    """Just enough of telegram.Bot for the gateway: scripted answers to send_message."""

    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def _call(self, method: str, chat_id: int) -> Message:
        self.calls.append((method, chat_id))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return Message(len(self.calls), dtm.datetime.now(dtm.UTC), Chat(chat_id, "private"))

    async def send_message(self, chat_id: int, *_: Any, **__: Any) -> Message:
        return await self._call("sendMessage", chat_id)

    async def send_chat_action(self, chat_id: int, *_: Any, **__: Any) -> bool:
        await self._call("sendChatAction", chat_id)
        return True

    async def edit_message_text(self, *_: Any, chat_id: int, **__: Any) -> Message:
        return await self._call("editMessageText", chat_id)

    async def delete_message(self, chat_id: int, *_: Any) -> bool:
        await self._call("deleteMessage", chat_id)
        return True


def gateway_with(bot: StubBot) -> TelegramGateway:
    return TelegramGateway(bot)  # type: ignore[arg-type]


async def test_handlers_never_wait_out_flood_control() -> None:
    bot = StubBot(RetryAfter(dtm.timedelta(seconds=30)))
    gateway = gateway_with(bot)
    started = time.monotonic()
    assert await gateway.send_text(5, "prompt") is None  # queued
    assert await gateway.send_text(5, "hint", urgency=Urgency.NOTICE) is None  # dropped
    assert await gateway.send_text(5, "next prompt") is None  # queued behind the first
    assert time.monotonic() - started < 0.5
    assert gateway.queued() == 2 and bot.calls == [("sendMessage", 5)]
    assert await gateway.send_text(6, "elsewhere") is not None  # other chats go on
    await gateway.close()


async def test_a_403_stops_every_further_call_to_that_chat() -> None:
    bot = StubBot(Forbidden("Forbidden: bot was blocked by the user"))
    gateway = gateway_with(bot)
    with pytest.raises(Forbidden):
        await gateway.send_text(5, "prompt")
    with pytest.raises(ChatUnreachable):
        await gateway.send_text(5, "again")
    with pytest.raises(ChatUnreachable):
        await gateway.deliver(5, gateway.text_sender(5, "result"))
    assert not await gateway.edit_status(5, 1, "status")
    await gateway.chat_action(5, None)
    await gateway.delete(5, 1)
    assert bot.calls == [("sendMessage", 5)]
    gateway.mark_reachable(5)  # the user wrote again
    assert await gateway.send_text(5, "welcome back") is not None


async def test_queued_messages_go_out_in_order_after_the_wait() -> None:
    bot = StubBot(RetryAfter(dtm.timedelta(seconds=0.2)))
    gateway = gateway_with(bot)
    first = gateway.queue(5, gateway.text_sender(5, "one"))
    second = gateway.queue(5, gateway.text_sender(5, "two"))
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 3)
    assert one.message_id < two.message_id and gateway.queued() == 0


async def test_each_chat_and_user_in_order_others_alongside() -> None:
    processor = PerUserOrderedProcessor()
    log: list[str] = []

    def update(chat: int, user: int) -> Update:
        sender = User(user, "u", False)
        message = Message(1, dtm.datetime.now(dtm.UTC), Chat(chat, "private"), from_user=sender)
        return Update(chat * 100 + len(log), message=message)

    async def work(name: str, seconds: float) -> None:
        log.append(f"{name}+")
        await asyncio.sleep(seconds)
        log.append(f"{name}-")

    await asyncio.gather(
        processor.process_update(update(1, 1), work("a1", 0.05)),
        processor.process_update(update(1, 1), work("a2", 0.0)),
        processor.process_update(update(2, 2), work("b1", 0.0)),
    )
    assert log.index("a1-") < log.index("a2+")  # the same pair: one after the other
    assert log.index("b1-") < log.index("a1-")  # another pair: not held up
    assert processor.busy() == 0 and processor.users() == set()
