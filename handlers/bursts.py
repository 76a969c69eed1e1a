"""Per-user flood limiting: a burst of photos or messages from one user counts once.

Runs first (group -2, before the guards), for every update:

* an update from a chat clears the gateway's "unreachable" mark of that chat (it wrote
  again, so it no longer blocks the bot);
* **bursts**: photos (or plain messages) that one user sends in one go, within about a
  second by Telegram's clock and before the bot answered the first, are one burst. Only
  the first is handled; the rest are ignored. When the first photo was taken at a step,
  the user is told once which photo was taken and how to change it: in the next prompt
  if the rest of the burst is already queued behind it (`taken`), else in one notice
  replying to that photo. Commands are never part of a burst (a quick /skip after a
  photo counts) and end the one before them;
* **flooding**: more than FLOOD_MAX inputs in FLOOD_WINDOW seconds mutes the user in
  that chat for MUTE_SECONDS: one notice, then their messages are ignored quietly.

Album items (messages with a `media_group_id`) pass through untouched and uncounted: an
album is meant as one input and belongs to the album collector (the albums feature),
which runs after this group and may call `BurstGuard.count(chat_id, user_id)` once per
album to have it count towards flooding. Callback queries (buttons) pass too.

State is kept per (chat, user) for a short while only, and bounded.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from telegram import Message, Update
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from handlers.common import is_group, say
from handlers.context import Context
from handlers.gateway import TelegramGateway
from handlers.guards import is_command_for_me
from handlers.inputs import image_of
from handlers.ordering import PerUserOrderedProcessor

log = logging.getLogger(__name__)

BURST_GROUP = -2
BURST_GAP = 1  # seconds (Telegram's message dates are whole seconds) between burst items
FLOOD_WINDOW = 10.0
FLOOD_MAX = 20  # inputs per FLOOD_WINDOW (a person waits for answers); one more mutes
MUTE_SECONDS = 30
IDLE_SECONDS = 120.0  # a (chat, user) quiet this long is forgotten
MAX_TRACKED = 50_000
BURSTS_KEY = "bursts"

Key = tuple[int, int]


@dataclass
class Burst:
    kind: str  # "photo" or "text"
    leader_id: int  # the message that was handled
    last_date: float
    first_reply: int | None = None  # the bot's first message in the chat after the leader
    step: str | None = None  # what the leader photo was taken as (None: not taken)
    noticed: bool = False
    ignored: int = 0


@dataclass
class UserState:
    inputs: deque[float] = field(default_factory=deque)
    muted_until: float = 0.0
    bursts: dict[str, Burst] = field(default_factory=dict)
    seen: float = field(default_factory=time.monotonic)


def kind_of(message: Message) -> str:
    if is_command_for_me(message):
        return "command"
    return "photo" if image_of(message) is not None else "text"


def is_input(update: Update, message: Message) -> bool:
    """A message that may feed a flow: anything in private; in groups, commands for this
    bot and replies to it (what privacy mode delivers anyway)."""
    if not is_group(update):
        return True
    if is_command_for_me(message):
        return True
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == message.get_bot().id)


class BurstGuard:
    def __init__(self, gateway: TelegramGateway) -> None:
        self._states: OrderedDict[Key, UserState] = OrderedDict()
        self._open: dict[int, list[Burst]] = {}  # bursts waiting for the bot's first reply
        gateway.on_sent(self._on_sent)

    def _on_sent(self, chat_id: int, message_id: int) -> None:
        for burst in self._open.pop(chat_id, []):
            if burst.first_reply is None:
                burst.first_reply = message_id

    def state(self, chat_id: int, user_id: int) -> UserState:
        key = (chat_id, user_id)
        now = time.monotonic()
        state = self._states.pop(key, None) or UserState()
        state.seen = now
        self._states[key] = state  # most recent last
        while self._states:
            oldest_key, oldest = next(iter(self._states.items()))
            if len(self._states) <= MAX_TRACKED and now - oldest.seen < IDLE_SECONDS:
                break
            del self._states[oldest_key]
            self._open.pop(oldest_key[0], None)
        return state

    def count(self, chat_id: int, user_id: int) -> bool:
        """Counts one input; True if the user has just been muted for flooding."""
        state = self.state(chat_id, user_id)
        now = time.monotonic()
        state.inputs.append(now)
        while state.inputs and now - state.inputs[0] >= FLOOD_WINDOW:
            state.inputs.popleft()
        if len(state.inputs) > FLOOD_MAX:
            state.inputs.clear()
            state.muted_until = now + MUTE_SECONDS
            return True
        return False

    def muted(self, chat_id: int, user_id: int) -> bool:
        return self.state(chat_id, user_id).muted_until > time.monotonic()

    def follows(self, chat_id: int, user_id: int, message: Message, kind: str) -> Burst | None:
        """The burst this message continues, if any; otherwise it starts a new one."""
        state = self.state(chat_id, user_id)
        if kind == "command":
            state.bursts.clear()
            return None
        date = message.date.timestamp()
        burst = state.bursts.get(kind)
        if (
            burst is not None
            and message.message_id > burst.leader_id
            and date - burst.last_date <= BURST_GAP
            and (burst.first_reply is None or message.message_id < burst.first_reply)
        ):
            burst.last_date = date
            burst.ignored += 1
            return burst
        burst = state.bursts[kind] = Burst(kind, message.message_id, date)
        self._open.setdefault(chat_id, []).append(burst)
        return None

    def leader(self, chat_id: int, user_id: int, message_id: int) -> Burst | None:
        burst = self.state(chat_id, user_id).bursts.get("photo")
        return burst if burst is not None and burst.leader_id == message_id else None


def burst_guard(context: Context) -> BurstGuard:
    guard: BurstGuard | None = context.bot_data.get(BURSTS_KEY)
    if guard is None:
        guard = context.bot_data[BURSTS_KEY] = BurstGuard(context.services.gateway)
    return guard


def _queued_photos(context: Context, chat_id: int, user_id: int, after: Message) -> int:
    """Photos of the same burst already received behind `after` (not yet handled)."""
    processor = context.application.update_processor
    if not isinstance(processor, PerUserOrderedProcessor):
        return 0
    count, last = 0, after.date.timestamp()
    for update in processor.waiting(chat_id, user_id):
        message = update.message if isinstance(update, Update) else None
        if message is None or message.media_group_id is not None:
            continue
        if image_of(message) is None or message.date.timestamp() - last > BURST_GAP:
            break
        count, last = count + 1, message.date.timestamp()
    return count


def taken(update: Update, context: Context, step: str) -> str:
    """Called when a photo was taken at `step`: remembers it for the burst it may lead,
    and returns the note for the next prompt if the rest of the burst is already queued
    behind it ("" otherwise)."""
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    if chat is None or user is None or message is None or message.media_group_id is not None:
        return ""
    guard = burst_guard(context)
    burst = guard.leader(chat.id, user.id, message.message_id)
    if burst is None:
        return ""
    burst.step = step
    if burst.noticed or not _queued_photos(context, chat.id, user.id, message):
        return ""
    burst.noticed = True
    return context.t(f"burst_taken_{step}")


async def check(update: Update, context: Context) -> None:
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    if chat is not None:
        context.services.gateway.mark_reachable(chat.id)
    if (
        chat is None
        or user is None
        or update.message is None  # edits, buttons, channel posts
        or message is None
        or message.media_group_id is not None  # albums: see the module docstring
        or not is_input(update, message)
    ):
        return
    guard = burst_guard(context)
    if guard.muted(chat.id, user.id):
        raise ApplicationHandlerStop
    if guard.count(chat.id, user.id):
        log.info("User %s floods chat %s: ignored for %d s", user.id, chat.id, MUTE_SECONDS)
        await say(update, context, context.t("flood_muted", n=MUTE_SECONDS), droppable=True)
        raise ApplicationHandlerStop
    burst = guard.follows(chat.id, user.id, message, kind_of(message))
    if burst is None:
        return
    log.info(
        "User %s in chat %s: %s %s ignored (a burst)", user.id, chat.id, burst.kind, message.id
    )
    if burst.kind == "photo" and burst.step is not None and not burst.noticed:
        burst.noticed = True
        await say(
            update,
            context,
            context.t(f"burst_taken_{burst.step}"),
            reply_to=burst.leader_id,
            droppable=True,
        )
    raise ApplicationHandlerStop


def register(application: Application) -> None:  # type: ignore[type-arg]
    application.add_handler(TypeHandler(Update, check), group=BURST_GROUP)
