"""Albums (media groups) as one input of the try-on conversation.

Telegram delivers an album as separate messages sharing a `media_group_id`, with no
count and no end marker. The first item that reaches a photo step opens the album and
waits for a quiet second after the last item; the other items, queued behind it (a
user's updates are handled in order, handlers/ordering.py), join it as they arrive
(`AlbumCollector.arrived`, told by the update processor), and are then dropped before
any handler sees them (`drop_collected`). In groups with privacy mode the other items
reach the bot only if they too reply to it: an album of which a single item arrived is
taken as that one photo, with a note saying how to send the rest. Items not replying to
the bot (privacy off, or the bot an admin) join an album a reply opened.

`handlers/album_plan.py` says what went where; this module checks the photos, fills
the draft, and answers once for the whole album, with buttons to fix a guessed role.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import Application, ApplicationHandlerStop, MessageHandler, filters

from handlers.album_plan import MAX_BATCH, AlbumPlan, plan_album
from handlers.common import is_group, say
from handlers.context import Context
from handlers.drafts import Draft, load_draft, save_draft
from handlers.inputs import image_of, reject_text
from handlers.keyboards import BOTTOM, PERSON, TOP, Action, button, callback
from handlers.ordering import PerUserOrderedProcessor
from services.images.normalize import ImageRejected
from services.model import InputImage

log = logging.getLogger(__name__)

QUIET_WINDOW = 1.0  # seconds without a new item after which an album is complete
COLLECTOR_KEY = "album_collector"
DROP_GROUP = -3  # before the burst guard (-2) and the other guards (-1)
CONFIRM, BATCH = "confirm", "batch"  # conversation states added by albums

AlbumKey = tuple[int, int, str]  # chat, user, media_group_id


class _AlbumItem(filters.MessageFilter):
    def filter(self, message: Message) -> bool:
        return message.media_group_id is not None


ALBUM_ITEM = _AlbumItem(name="AlbumItem")


@dataclass
class _Album:
    messages: list[Message] = field(default_factory=list)
    last: float = field(default_factory=time.monotonic)


class AlbumCollector:
    """Albums being received, per chat, user and media group (in memory: an album takes
    about a second; a restart in that second loses it, and the user sends it again)."""

    def __init__(self, quiet: float = QUIET_WINDOW) -> None:
        self.quiet = quiet
        self._open: dict[AlbumKey, _Album] = {}
        self._closed: dict[AlbumKey, float] = {}
        # Items seen arriving, before any of them opened an album (they may all arrive in
        # one batch, before the first one's turn).
        self._arrived: dict[AlbumKey, _Album] = {}

    def start(self, key: AlbumKey, message: Message) -> bool:
        """Opens an album with its first item; False if it is known already."""
        if key in self._open or key in self._closed:
            self.add(key, message)
            return False
        album = self._arrived.pop(key, None) or _Album([])
        if all(m.message_id != message.message_id for m in album.messages):
            album.messages.append(message)
        self._open[key] = album
        return True

    def add(self, key: AlbumKey, message: Message) -> bool:
        """A further item: True if it belongs to an album being (or just) collected."""
        album = self._open.get(key)
        if album is not None:
            album.messages.append(message)
            album.last = time.monotonic()
            return True
        return key in self._closed  # a straggler of a finished album: dropped

    def arrived(self, update: object) -> None:
        """The update processor's arrival listener: an item of an album being collected
        joins it at once, though its own turn comes later."""
        if not isinstance(update, Update) or (key := key_of(update)) is None:
            return
        if key in self._open:
            self.add(key, _message(update))
        elif key not in self._closed:
            now = time.monotonic()
            for old in [k for k, a in self._arrived.items() if now - a.last > 60]:
                del self._arrived[old]
            album = self._arrived.setdefault(key, _Album([]))
            album.messages.append(_message(update))
            album.last = now

    def collected(self, update: Update) -> bool:
        """Whether this is an item of an album already taken (or being taken) whole."""
        key = key_of(update)
        return key is not None and key in self._closed

    async def collect(self, key: AlbumKey) -> list[Message]:
        """Waits for the quiet window after the last item; the items in message order."""
        album = self._open[key]
        # A debounce: each new item moves the deadline.
        while (wait := album.last + self.quiet - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        del self._open[key]
        now = time.monotonic()
        self._closed = {k: t for k, t in self._closed.items() if now - t < 60}
        self._closed[key] = now
        return sorted(album.messages, key=lambda m: m.message_id)


def collector_of(context: Context) -> AlbumCollector:
    collector = context.bot_data.get(COLLECTOR_KEY)
    if not isinstance(collector, AlbumCollector):
        collector = context.bot_data[COLLECTOR_KEY] = AlbumCollector()
    return collector


def key_of(update: Update) -> AlbumKey | None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None or message.media_group_id is None:
        return None
    return (message.chat_id, user.id, message.media_group_id)


# ---- handlers ----------------------------------------------------------------------------


async def on_album_item(update: Update, context: Context) -> object:
    """The first item of an album at a photo step: collect the album, then take it whole."""
    from handlers.conversation import on_photo  # the single-photo step (imports us)

    key = key_of(update)
    if key is None or not collector_of(context).start(key, _message(update)):
        return None
    messages = await collector_of(context).collect(key)
    if len(messages) == 1:
        if is_group(update):
            await say(update, context, context.t("album_partial"))
        return await on_photo(update, context)
    return await take_album(update, context, messages)


async def drop_collected(update: Update, context: Context) -> None:
    """An item of an album that was taken whole: nothing more to do with it."""
    if collector_of(context).collected(update):
        raise ApplicationHandlerStop


def _message(update: Update) -> Message:
    message = update.effective_message
    assert message is not None
    return message


async def take_album(update: Update, context: Context, messages: list[Message]) -> object:
    from handlers.batches import offer_batch
    from handlers.conversation import advance, current_draft, expired, submit

    draft = current_draft(update, context)
    step = draft.next_step() if draft else None
    if draft is None or step is None:
        return await expired(update, context)
    lang = draft.lang
    plan = plan_album(step, [m.caption for m in messages])
    log.info("album of %d at step %s: %s", len(messages), step, plan.kind)
    if plan.kind != "fill" and plan.kind != "batch":
        await say(update, context, context.t(f"album_{plan.kind}", lang, most=MAX_BATCH))
        return None
    images = await _accept_all(update, context, draft, messages, _used(plan))
    if images is None:
        return None
    draft.last_message_id = messages[-1].message_id
    if plan.person is not None:
        draft.put(PERSON, images[plan.person])
        draft.from_profile = False
    if plan.kind == "batch":
        return await offer_batch(update, context, draft, plan, images)
    summary = summary_text(context, lang, plan)
    if plan.top is not None:
        draft.put(TOP, images[plan.top])
        if plan.dress:
            draft.dress = True
            if plan.bottom is None:
                draft.put(BOTTOM, None)
    if plan.bottom is not None:
        draft.put(BOTTOM, images[plan.bottom])
    if draft.next_step() is None:
        if plan.guessed:
            return await ask_confirm(update, context, draft, summary, plan)
        await say(update, context, summary)
        return await submit(update, context, draft)
    rows = fix_rows(update, context, draft, plan) if plan.guessed else []
    return await advance(update, context, draft, summary, extra=rows)


def _used(plan: AlbumPlan) -> list[int]:
    used = [i for i in (plan.person, plan.top, plan.bottom) if i is not None]
    return sorted({*used, *plan.garments})


async def _accept_all(
    update: Update, context: Context, draft: Draft, messages: list[Message], used: list[int]
) -> dict[int, InputImage] | None:
    """Checks (and starts uploading) every photo used; None, after one answer, if any
    is unusable: an album with a bad photo changes nothing."""
    found = {i: image_of(messages[i]) for i in used}
    missing = [i for i, image in found.items() if image is None]
    if missing:
        await say(update, context, context.t("album_not_photo", draft.lang, number=missing[0] + 1))
        return None
    intake = context.services.intake
    results = await asyncio.gather(
        *(intake.accept(image) for image in found.values() if image is not None),
        return_exceptions=True,
    )
    accepted: dict[int, InputImage] = {}
    for index, result in zip(found, results, strict=True):
        if isinstance(result, ImageRejected):
            reason = reject_text(context, draft.lang, result)
            text = context.t("album_photo_rejected", draft.lang, number=index + 1, reason=reason)
            await say(update, context, text)
            return None
        if isinstance(result, BaseException):
            log.warning("album photo %d could not be fetched: %r", index + 1, result)
            await say(update, context, context.t("download_failed", draft.lang))
            return None
        accepted[index] = result
    return accepted


def summary_text(context: Context, lang: str, plan: AlbumPlan) -> str:
    """One line per photo: "Photo 2 → top"."""
    lines = [
        context.t(f"album_role_{role}", lang, number=index + 1)
        for index, role in sorted(plan.roles().items())
    ]
    return "\n".join([context.t("album_received", lang), *lines])


def fix_rows(
    update: Update, context: Context, draft: Draft, plan: AlbumPlan
) -> list[list[InlineKeyboardButton]]:
    """Buttons that correct a role guessed from the order."""
    owner = user_of(update)
    t, lang = context.texts, draft.lang
    rows = []
    if plan.top is not None and plan.bottom is not None and not plan.dress:
        rows.append([button(t, lang, "btn_album_swap", callback(Action.ALBUM_FIX, owner, "tb"))])
    if plan.person is not None and plan.top is not None:
        rows.append(
            [button(t, lang, "btn_album_person_is_top", callback(Action.ALBUM_FIX, owner, "pt"))]
        )
    single_top = plan.top is not None and plan.bottom is None and not plan.dress
    if single_top and BOTTOM not in draft.decided:
        rows.append(
            [button(t, lang, "btn_album_top_is_bottom", callback(Action.ALBUM_FIX, owner, "t2b"))]
        )
    return rows


def user_of(update: Update) -> int:
    user = update.effective_user
    assert user is not None
    return user.id


async def ask_confirm(
    update: Update, context: Context, draft: Draft, summary: str, plan: AlbumPlan | None
) -> object:
    """Everything is there but some role was guessed: show it, try on only on a tap."""
    chat = update.effective_chat
    assert chat is not None and context.user_data is not None
    save_draft(context.user_data, chat.id, draft)
    owner = user_of(update)
    t, lang = context.texts, draft.lang
    rows = fix_rows(update, context, draft, plan) if plan is not None else []
    if plan is None and draft.top is not None and draft.bottom is not None:
        rows.append([button(t, lang, "btn_album_swap", callback(Action.ALBUM_FIX, owner, "tb"))])
    rows.insert(0, [button(t, lang, "btn_album_go", callback(Action.ALBUM_GO, owner))])
    rows.append([button(t, lang, "btn_cancel", callback(Action.CANCEL, owner))])
    text = "\n\n".join(filter(None, [summary, context.t("album_confirm", lang)]))
    await say(update, context, text, markup=InlineKeyboardMarkup(rows), thread_id=draft.thread_id)
    return CONFIRM


async def on_album_fix(update: Update, context: Context) -> object:
    """A fix button: swap top and bottom, swap person and top, or the top is a bottom."""
    from handlers.conversation import advance, expired

    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    chat = update.effective_chat
    assert chat is not None
    draft = load_draft(context.user_data, chat.id)
    operation = (query.data or "").split(":")[1]
    if draft is None:
        return await expired(update, context)
    if isinstance(query.message, Message):
        await context.services.gateway.edit_markup(query.message)
    if operation == "tb":
        draft.top, draft.bottom = draft.bottom, draft.top
        draft.dress = False
    elif operation == "pt" and draft.person is not None and draft.top is not None:
        draft.person, draft.top = draft.top, draft.person
    elif operation == "t2b" and draft.top is not None:
        draft.put(BOTTOM, draft.top)
        draft.top = None
    note = context.t("album_fixed", draft.lang)
    if draft.next_step() is None:
        return await ask_confirm(update, context, draft, note, None)
    return await advance(update, context, draft, note)


async def on_album_go(update: Update, context: Context) -> object:
    from handlers.conversation import expired, submit

    query = update.callback_query
    assert query is not None
    await query.answer()
    chat = update.effective_chat
    assert chat is not None
    draft = load_draft(context.user_data, chat.id)
    if draft is None or draft.next_step() is not None:
        return await expired(update, context)
    if isinstance(query.message, Message):
        await context.services.gateway.edit_markup(query.message)
    return await submit(update, context, draft)


async def on_confirm_input(update: Update, context: Context) -> object:
    chat = update.effective_chat
    assert chat is not None
    draft = load_draft(context.user_data, chat.id)
    await say(update, context, context.t("album_confirm_hint", draft.lang if draft else None))
    return None


# ---- albums seen in a group, for /tryon replying to one -----------------------------------

SEEN_KEY = "albums_seen"
# A handler group of its own (2 is the language menu): it sees every album item, consumed or not.
SEEN_GROUP = 3
SEEN_MAX = 200  # albums remembered (in memory, the most recent)

SeenAlbums = dict[tuple[int, str], dict[int, tuple[InputImage, str | None]]]


async def remember_album_item(update: Update, context: Context) -> None:
    """Keeps the items of albums posted in groups the bot can see, so "/tryon" replying
    to one item can offer the whole album (with privacy mode on, only items that reply
    to the bot reach it: then the album is what arrived)."""
    message = update.effective_message
    if message is None or message.media_group_id is None or not is_group(update):
        return
    image = image_of(message)
    if image is None:
        return
    seen: SeenAlbums = context.bot_data.setdefault(SEEN_KEY, {})
    key = (message.chat_id, message.media_group_id)
    seen.setdefault(key, {})[message.message_id] = (image, message.caption)
    while len(seen) > SEEN_MAX:
        del seen[next(iter(seen))]


def seen_album(context: Context, message: Message) -> list[tuple[InputImage, str | None]]:
    """The known items of the album `message` belongs to, in order (itself included)."""
    if message.media_group_id is None:
        return []
    seen: SeenAlbums = context.bot_data.get(SEEN_KEY, {})
    items = dict(seen.get((message.chat_id, message.media_group_id), {}))
    image = image_of(message)
    if image is not None:
        items.setdefault(message.message_id, (image, message.caption))
    return [items[k] for k in sorted(items)]


async def on_stray_album_item(update: Update, context: Context) -> None:
    """A private album outside any flow: one hint for the album, not one per photo."""
    key = key_of(update)
    hinted: dict[AlbumKey, float] = context.bot_data.setdefault("albums_hinted", {})
    if key is None or key in hinted:
        return
    now = time.monotonic()
    for old in [k for k, t in hinted.items() if now - t > 60]:
        del hinted[old]
    hinted[key] = now
    await say(update, context, context.t("idle_hint"))


def register(application: Application) -> None:  # type: ignore[type-arg]
    """Call after the conversation and before handlers.commands (its private catch-all)."""
    collector = application.bot_data[COLLECTOR_KEY] = AlbumCollector()
    processor = application.update_processor
    if isinstance(processor, PerUserOrderedProcessor):
        processor.on_arrival(collector.arrived)
    application.add_handler(
        MessageHandler(filters.UpdateType.MESSAGE & ALBUM_ITEM, drop_collected),
        group=DROP_GROUP,
    )
    application.add_handler(
        MessageHandler(
            filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE & ALBUM_ITEM,
            on_stray_album_item,
        )
    )
    application.add_handler(
        MessageHandler(filters.UpdateType.MESSAGE & ALBUM_ITEM, remember_album_item),
        group=SEEN_GROUP,
    )
