"""Several garments at once: "Try each one on" (one try-on per garment, same person) or
"Pick one", and the batch's delivery as one album.

A batch is one request of the user (services/tryon/scheduler.py counts it once towards
the per-user allowance, and runs its jobs one at a time unless the line is empty); its
quota is admitted for all its try-ons at once (`TryOnRunner.launch_batch`).

`BatchNotifier` is the pipeline's notifier with batches added: one status message for
the whole batch ("2 of 4 ready"), and each job's result held until every job of the
batch has ended; then one album (`sendMediaGroup`) in the order the garments were sent,
each captioned with its number, the failures named in the first caption. A paid result
is never dropped: the album falls back to one photo per result, and each job's
delivery waits for the album that carries it (so a job is marked delivered only once
Telegram accepted its picture).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden

from handlers.album_plan import MAX_BATCH, AlbumPlan, role_of
from handlers.common import say, thread_of
from handlers.context import Context
from handlers.delivery import StatusConfig, TelegramNotifier, failure_text, fits_send_photo
from handlers.drafts import Draft, drop_draft, load_draft, save_draft
from handlers.gateway import TelegramGateway, Urgency
from handlers.keyboards import (
    BOTTOM,
    PERSON,
    TOP,
    Action,
    button,
    callback,
    failure_markup,
    result_markup,
)
from handlers.texts import Texts
from services.model import ACTIVE_STATES, FailureKind, InputImage, Job, new_job_id
from services.storage.jobs import JobStore
from services.tryon.features import Features
from services.tryon.ports import Receipt, Stage, Undeliverable
from services.tryon.scheduler import QueueFull

log = logging.getLogger(__name__)

BATCH = "batch"  # conversation state: "try each one on" or "pick one"
DOCUMENT_PREFIX = "doc:"  # a kept result file id that is a document, not a photo
# A batch's status shows its furthest job: the first of these that any job is at.
STAGE_ORDER = (
    Stage.SENDING,
    Stage.GENERATING,
    Stage.QUEUED_REMOTE,
    Stage.SUBMITTING,
    Stage.WAITING,
    Stage.PREPARING,
)


def _file_id(message: Message) -> str | None:
    if message.photo:
        return message.photo[-1].file_id
    if message.document is not None:
        return DOCUMENT_PREFIX + message.document.file_id
    return None


# ---- the conversation side ---------------------------------------------------------------


def _owner(update: Update) -> int:
    user = update.effective_user
    assert user is not None
    return user.id


async def offer_batch(
    update: Update,
    context: Context,
    draft: Draft,
    plan: AlbumPlan,
    images: dict[int, InputImage],
) -> object:
    """An album of several garments for one slot: say what it costs, let the user choose."""
    assert plan.batch_slot is not None
    draft.batch = [images[i] for i in plan.garments]
    draft.batch_slot = plan.batch_slot
    if plan.top is not None:
        draft.put(TOP, images[plan.top])
    if plan.bottom is not None:
        draft.put(BOTTOM, images[plan.bottom])
    return await show_offer(update, context, draft)


async def show_offer(update: Update, context: Context, draft: Draft) -> object:
    chat = update.effective_chat
    assert chat is not None and context.user_data is not None
    save_draft(context.user_data, chat.id, draft)
    count, lang, t = len(draft.batch), draft.lang, context.texts
    owner = _owner(update)
    lines = [context.t(f"batch_offer_{draft.batch_slot}", lang, n=count)]
    left = await context.services.quota.remaining(owner)
    if left is not None:
        lines.append(context.t("batch_quota_left", lang, n=left))
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    context.t("btn_batch_each", lang, n=count),
                    callback_data=callback(Action.BATCH_EACH, owner),
                )
            ],
            [button(t, lang, "btn_batch_pick", callback(Action.BATCH_PICK, owner))],
            [button(t, lang, "btn_cancel", callback(Action.CANCEL, owner))],
        ]
    )
    await say(update, context, "\n\n".join(lines), markup=markup, thread_id=draft.thread_id)
    return BATCH


async def offer_seen_album(
    update: Update, context: Context, items: list[tuple[InputImage, str | None]]
) -> object:
    """/tryon replying to an album of garments in a group: try each one on, or pick one."""
    from handlers.conversation import END

    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    assert chat is not None and user is not None and message is not None
    assert context.user_data is not None
    roles = [role_of(caption) for _image, caption in items]
    garments = [image for (image, _c), role in zip(items, roles, strict=True) if role != PERSON]
    if len(garments) > MAX_BATCH:
        await say(update, context, context.t("album_too_many", most=MAX_BATCH))
        return END
    draft = Draft(lang=context.lang, thread_id=thread_of(message))
    draft.last_message_id = message.message_id
    all_bottoms = all(role == BOTTOM for role in roles if role != PERSON)
    draft.batch, draft.batch_slot = garments, BOTTOM if all_bottoms else TOP
    profile = await context.services.profiles.get(user.id)
    if profile is not None:
        draft.put(PERSON, profile)
        draft.from_profile = True
    return await show_offer(update, context, draft)


async def on_batch_each(update: Update, context: Context) -> object:
    from handlers.conversation import advance, expired

    query = update.callback_query
    assert query is not None
    await query.answer()
    draft = _draft(update, context)
    if draft is None or not draft.batch:
        return await expired(update, context)
    if isinstance(query.message, Message):
        await context.services.gateway.edit_markup(query.message)
    draft.batch_go = True
    return await advance(update, context, draft)  # asks for the person first if needed


async def start_batch(update: Update, context: Context, draft: Draft) -> object:
    """Admits all the batch's try-ons at once (or none), stores and starts them."""
    from handlers.conversation import END

    chat = update.effective_chat
    assert chat is not None and draft.person is not None and draft.batch_slot is not None
    owner = _owner(update)
    svc = context.services
    batch_id = new_job_id()
    size = len(draft.batch)
    jobs = []
    for index, garment in enumerate(draft.batch, start=1):
        slots = {TOP: draft.top, BOTTOM: draft.bottom, draft.batch_slot: garment}
        jobs.append(
            Job(
                id=new_job_id(),
                chat_id=chat.id,
                thread_id=draft.thread_id,
                user_id=owner,
                lang=draft.lang,
                model=svc.tryon_model,
                person=draft.person,
                top=slots[TOP],
                bottom=slots[BOTTOM],
                request_message_id=draft.last_message_id,
                batch_id=batch_id,
                batch_index=index,
                batch_size=size,
            )
        )
    draft.batch_go = False
    try:
        refusal = await svc.runner.launch_batch(jobs, admit=lambda n: svc.quota.check(owner, n))
    except QueueFull:
        refused = context.t("too_many_running", draft.lang)
    else:
        if refusal is None:
            drop_draft(context.user_data, chat.id)
            return END
        left = await svc.quota.remaining(owner)
        # `left` covers both the user's limit and the bot's daily budget.
        refused = context.t("batch_refused", draft.lang, n=size, left=left or 0)
    assert context.user_data is not None
    save_draft(context.user_data, chat.id, draft)
    t, lang = context.texts, draft.lang
    markup = InlineKeyboardMarkup(
        [
            [button(t, lang, "btn_batch_pick", callback(Action.BATCH_PICK, owner))],
            [button(t, lang, "btn_cancel", callback(Action.CANCEL, owner))],
        ]
    )
    await say(update, context, refused, markup=markup, thread_id=draft.thread_id)
    return BATCH  # "Pick one" still works


async def on_batch_pick(update: Update, context: Context) -> object:
    from handlers.conversation import expired

    query = update.callback_query
    assert query is not None
    await query.answer()
    draft = _draft(update, context)
    if draft is None or not draft.batch:
        return await expired(update, context)
    if isinstance(query.message, Message):
        await context.services.gateway.edit_markup(query.message)
    owner = _owner(update)
    numbers = [
        InlineKeyboardButton(str(n), callback_data=callback(Action.BATCH_CHOSEN, owner, str(n)))
        for n in range(1, len(draft.batch) + 1)
    ]
    cancel = button(context.texts, draft.lang, "btn_cancel", callback(Action.CANCEL, owner))
    await say(
        update,
        context,
        context.t("batch_which", draft.lang),
        markup=InlineKeyboardMarkup([numbers, [cancel]]),
        thread_id=draft.thread_id,
    )
    return BATCH


async def on_batch_chosen(update: Update, context: Context) -> object:
    from handlers.conversation import advance, expired

    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    draft = _draft(update, context)
    number = query.data.split(":")[1]
    if draft is None or not draft.batch or draft.batch_slot is None or not number.isdigit():
        return await expired(update, context)
    if not 1 <= int(number) <= len(draft.batch):
        return None
    if isinstance(query.message, Message):
        await context.services.gateway.edit_markup(query.message)
    draft.put(draft.batch_slot, draft.batch[int(number) - 1])
    draft.batch, draft.batch_slot, draft.batch_go = [], None, False
    return await advance(update, context, draft)


async def on_batch_input(update: Update, context: Context) -> object:
    draft = _draft(update, context)
    await say(update, context, context.t("batch_hint", draft.lang if draft else None))
    return None


def _draft(update: Update, context: Context) -> Draft | None:
    chat = update.effective_chat
    assert chat is not None
    return load_draft(context.user_data, chat.id)


# ---- delivery ----------------------------------------------------------------------------


@dataclass
class _Batch:
    size: int
    chat_id: int
    thread_id: int | None
    lang: str
    user_id: int
    request_message_id: int | None
    status_message_id: int | None
    images: dict[int, tuple[Job, bytes]] = field(default_factory=dict)
    failures: dict[int, tuple[Job, FailureKind]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sender: asyncio.Task[dict[int, Receipt]] | None = None
    sending: asyncio.Event = field(default_factory=asyncio.Event)
    stages: dict[str, tuple[Stage, int | None]] = field(default_factory=dict)  # per job
    shown: str = ""

    @property
    def ready(self) -> int:
        return len(self.images) + len(self.failures)


class BatchNotifier(TelegramNotifier):
    """TelegramNotifier, with a batch's jobs shown and delivered together."""

    def __init__(
        self,
        gateway: TelegramGateway,
        texts: Texts,
        config: StatusConfig,
        features: Features | None = None,
        *,
        store: JobStore,
    ) -> None:
        super().__init__(gateway, texts, config, features)
        self.store = store
        self._batches: dict[str, _Batch] = {}
        self._edits: set[asyncio.Task[None]] = set()

    async def result_sent(self, job: Job, message: Message) -> None:
        await self._keep_file(job, message)

    async def _keep_file(self, job: Job, message: Message) -> None:
        """Keeps the result's file id for /history and Compare, in the background: the
        delivery is not held up for it."""
        file_id = _file_id(message)
        if file_id is None:
            return
        task = asyncio.create_task(self._store_file(job.id, file_id), name=f"keep-{job.id}")
        self._edits.add(task)
        task.add_done_callback(self._edits.discard)

    async def _store_file(self, job_id: str, file_id: str) -> None:
        try:
            await self.store.set_result_file(job_id, file_id)
        except Exception:  # history is a convenience; the delivery itself stands
            log.exception("job %s: could not keep the result's file id", job_id)

    def _batch(self, job: Job) -> _Batch:
        assert job.batch_id is not None
        batch = self._batches.get(job.batch_id)
        if batch is None:
            batch = self._batches[job.batch_id] = _Batch(
                size=job.batch_size or 1,
                chat_id=job.chat_id,
                thread_id=job.thread_id,
                lang=job.lang,
                user_id=job.user_id,
                request_message_id=job.request_message_id,
                status_message_id=job.status_message_id,
            )
        return batch

    # ---- status ----------------------------------------------------------------------

    def _status_text(self, batch: _Batch) -> str:
        """ "2 of 4 ready" and the stage of the batch's furthest job still working."""
        head = self.texts.get(batch.lang, "batch_status", ready=batch.ready, n=batch.size)
        stage, position = min(
            batch.stages.values(),
            key=lambda s: (STAGE_ORDER.index(s[0]), s[1] or 0),
            default=(Stage.PREPARING, None),
        )
        line = self.texts.get(batch.lang, f"stage_{stage.value}", position=position or 1)
        return f"{head}\n{line}"

    async def started(self, job: Job) -> Receipt:
        if job.batch_id is None:
            return await super().started(job)
        batch = self._batch(job)
        async with batch.lock:
            if batch.status_message_id is None:
                text = self._status_text(batch)
                message = await self.gateway.send_text(
                    batch.chat_id,
                    text,
                    thread_id=batch.thread_id,
                    reply_to=batch.request_message_id,
                    urgency=Urgency.NOTICE,  # a courtesy: dropped under flood control
                )
                if message is not None:
                    batch.status_message_id, batch.chat_id = message.message_id, message.chat_id
                    batch.shown = text
        return Receipt(batch.chat_id, batch.status_message_id)

    def stage(self, job: Job, stage: Stage, position: int | None = None) -> None:
        if job.batch_id is None:
            super().stage(job, stage, position)
            return
        batch = self._batch(job)
        if batch.sender is not None:
            return
        batch.stages[job.id] = (stage, position)
        self._refresh(batch)

    def _refresh(self, batch: _Batch) -> None:
        text = self._status_text(batch)
        if text == batch.shown or batch.status_message_id is None:
            return
        batch.shown = text
        task = asyncio.create_task(
            self._edit(batch.chat_id, batch.status_message_id, text), name="batch-status"
        )
        self._edits.add(task)
        task.add_done_callback(self._edits.discard)

    async def _edit(self, chat_id: int, message_id: int, text: str) -> None:
        await self.gateway.edit_status(chat_id, message_id, text)
        await self.gateway.chat_action(chat_id, None)

    async def finished(self, job: Job) -> None:
        if job.batch_id is None:
            await super().finished(job)
        # A batch's status message goes once its album is sent (in _send_album).

    # ---- outcomes --------------------------------------------------------------------

    async def deliver(self, job: Job, image: bytes) -> Receipt:
        if job.batch_id is None:
            return await super().deliver(job, image)
        assert job.batch_index is not None
        batch = self._batch(job)
        batch.images[job.batch_index] = (job, image)
        batch.stages.pop(job.id, None)
        sender = await self._settle(job, batch)
        if sender is None:  # wait for the batch's last job to send the album
            await batch.sending.wait()
            sender = batch.sender
            assert sender is not None
        receipts = await asyncio.shield(sender)
        return receipts[job.batch_index]

    async def failed(self, job: Job, kind: FailureKind) -> Receipt:
        if job.batch_id is None:
            return await super().failed(job, kind)
        assert job.batch_index is not None
        batch = self._batch(job)
        batch.failures[job.batch_index] = (job, kind)
        batch.stages.pop(job.id, None)
        sender = await self._settle(job, batch)
        if sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(sender)
        return Receipt(batch.chat_id, None)

    async def _settle(self, job: Job, batch: _Batch) -> asyncio.Task[dict[int, Receipt]] | None:
        """Counts one more ended job; the one that ends the batch starts the album."""
        async with batch.lock:
            if batch.sender is not None:
                return None
            self._refresh(batch)
            if batch.ready < batch.size:
                # After a restart some jobs ended in the previous run: they count too.
                assert job.batch_id is not None
                ended = {
                    j.batch_index
                    for j in await self.store.batch(job.batch_id)
                    if j.state not in ACTIVE_STATES
                }
                if len(ended | set(batch.images) | set(batch.failures)) < batch.size:
                    return None
            batch.sender = asyncio.create_task(self._send_album(job.batch_id, batch))
            batch.sending.set()
            return batch.sender

    async def _send_album(self, batch_id: str | None, batch: _Batch) -> dict[int, Receipt]:
        try:
            return await self._send_results(batch)
        finally:
            if batch.status_message_id is not None:
                await self.gateway.delete(batch.chat_id, batch.status_message_id)
            if batch_id is not None:
                self._batches.pop(batch_id, None)

    async def _send_results(self, batch: _Batch) -> dict[int, Receipt]:
        lang, texts = batch.lang, self.texts
        results = sorted(batch.images.items())
        failed = sorted(batch.failures.items())
        notes = [
            texts.get(lang, "batch_item_failed", number=n, reason=failure_text(texts, lang, kind))
            for n, (_job, kind) in failed
        ]
        if not results:
            first_job, kind = failed[0][1]
            text = "\n".join([texts.get(lang, "batch_all_failed"), *notes])
            await self.gateway.deliver(
                batch.chat_id,
                self.gateway.text_sender(
                    batch.chat_id,
                    text,
                    thread_id=batch.thread_id,
                    reply_to=batch.request_message_id,
                    markup=failure_markup(texts, lang, kind, first_job.id, first_job.user_id),
                ),
            )
            return {}
        receipts: dict[int, Receipt] = {}
        if len(results) >= 2:
            try:
                messages = await self._album(batch, results, notes)
            except BadRequest as error:  # not as an album: one by one, so none is lost
                log.warning("batch album refused (%s); sending one by one", error)
            else:
                for (number, (job, _image)), message in zip(results, messages, strict=True):
                    receipts[number] = Receipt(message.chat_id, message.message_id)
                    if file_id := _file_id(message):  # before Compare is offered
                        await self._store_file(job.id, file_id)
                await self._follow_up(batch, results, failed)
                return receipts
        for number, (job, image) in results:
            caption = "\n".join([texts.get(lang, "batch_item_caption", number=number), *notes])
            notes = []
            try:
                message = await self.gateway.deliver(
                    batch.chat_id,
                    self.gateway.image_sender(
                        batch.chat_id,
                        image,
                        caption,
                        thread_id=batch.thread_id,
                        reply_to=batch.request_message_id,
                        markup=result_markup(
                            texts, lang, job.id, job.user_id, compare=len(results) > 1
                        ),
                        as_document=not fits_send_photo(image),
                    ),
                    max_ambiguous=1,
                )
            except (BadRequest, Forbidden) as error:
                raise Undeliverable(str(error)) from error
            receipts[number] = Receipt(message.chat_id, message.message_id)
            await self._keep_file(job, message)
        if any(kind.transient for _n, (_j, kind) in failed):
            await self._follow_up(batch, [], failed)
        return receipts

    async def _album(
        self, batch: _Batch, results: list[tuple[int, tuple[Job, bytes]]], notes: list[str]
    ) -> tuple[Message, ...]:
        texts, lang = self.texts, batch.lang
        as_photos = all(fits_send_photo(image) for _n, (_j, image) in results)
        media: list[InputMediaPhoto | InputMediaDocument] = []
        for position, (number, (_job, image)) in enumerate(results):
            lines = [texts.get(lang, "batch_item_caption", number=number)]
            if position == 0:
                lines += notes
            caption = "\n".join(lines)
            name = f"tryon-{number}.jpg"
            if as_photos:
                media.append(InputMediaPhoto(image, caption=caption, filename=name))
            else:
                media.append(InputMediaDocument(image, caption=caption, filename=name))

        async def send(chat_id: int, reply_to: int | None) -> tuple[Message, ...]:
            messages = await self.gateway.reliably(
                chat_id,
                lambda: self.gateway.bot.send_media_group(
                    chat_id,
                    media,
                    message_thread_id=batch.thread_id,
                    reply_parameters=(
                        ReplyParameters(reply_to, allow_sending_without_reply=True)
                        if reply_to is not None
                        else None
                    ),
                ),
            )
            for _extra in messages[1:]:  # each picture counts towards a group's 20 a minute
                self.gateway.budget.record(chat_id)
            return messages

        try:
            return await send(batch.chat_id, batch.request_message_id)
        except ChatMigrated as migrated:
            batch.chat_id, batch.request_message_id = migrated.new_chat_id, None
            batch.status_message_id = None
            return await send(batch.chat_id, None)
        except Forbidden as error:
            raise Undeliverable(str(error)) from error

    async def _follow_up(
        self,
        batch: _Batch,
        results: list[tuple[int, tuple[Job, bytes]]],
        failed: list[tuple[int, tuple[Job, FailureKind]]],
    ) -> None:
        """Albums carry no buttons: one short message with Full size per number, Try
        again per garment that may work on a second try, Compare and Start over."""
        texts, lang, owner = self.texts, batch.lang, batch.user_id
        full = [
            InlineKeyboardButton(
                texts.get(lang, "btn_full_size_n", number=number),
                callback_data=callback(Action.FULL, owner, job.id),
            )
            for number, (job, _image) in results
        ]
        retry = [
            InlineKeyboardButton(
                texts.get(lang, "btn_retry_n", number=number),
                callback_data=callback(Action.RETRY, owner, job.id),
            )
            for number, (job, kind) in failed
            if kind.transient
        ]
        rows = [full[i : i + 5] for i in range(0, len(full), 5)]
        rows += [retry[i : i + 5] for i in range(0, len(retry), 5)]
        last = [button(texts, lang, "btn_new", callback(Action.NEW, owner))]
        if len(results) > 1:
            last.insert(0, button(texts, lang, "btn_compare", callback(Action.COMPARE, owner)))
        rows.append(last)
        text = (
            texts.get(lang, "batch_done", n=len(results))
            if results
            else texts.get(lang, "batch_retry_hint")
        )
        try:
            await self.gateway.send_text(
                batch.chat_id,
                text,
                thread_id=batch.thread_id,
                markup=InlineKeyboardMarkup(rows),
            )
        except Exception as error:  # the pictures are there; the buttons are a convenience
            log.warning("batch follow-up not sent: %r", error)
