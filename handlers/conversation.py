"""The try-on conversation: person photo → top → bottom → submit (diagram: conversation.mmd).

Every step is a plain blocking handler: the update processor (handlers/ordering.py)
runs each (chat, user)'s updates one at a time and in order, and other users' updates
alongside, so checking a photo holds up nobody else, and a user's quick next message (a
/skip right after a photo) waits for that step and lands in the step it was meant for.
No handler waits out flood control (handlers/gateway.py). No step runs with
block=False, so the ConversationHandler never enters its WAITING state. Every step keeps
its draft in user_data (persisted), so a restart between steps loses nothing.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from telegram import InlineKeyboardButton, Message, Update
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from handlers.albums import (
    ALBUM_ITEM,
    CONFIRM,
    on_album_fix,
    on_album_go,
    on_album_item,
    on_confirm_input,
    seen_album,
)
from handlers.batches import (
    BATCH,
    offer_seen_album,
    on_batch_chosen,
    on_batch_each,
    on_batch_input,
    on_batch_pick,
    start_batch,
)
from handlers.bursts import taken
from handlers.common import say, thread_of
from handlers.context import Context
from handlers.drafts import Draft, drop_draft, flow_end, load_draft, save_draft
from handlers.inputs import INPUT_MESSAGE, PHOTO_INPUT, accept_photo, image_of
from handlers.keyboards import (
    BOTTOM,
    PERSON,
    TOP,
    Action,
    category_markup,
    parse_callback,
    pattern,
)
from handlers.launch import button_job, offer_undelivered, refused_at_start, start_tryon
from handlers.profile import ask_me_photo, on_me, on_me_delete, on_me_photo
from handlers.prompts import CATEGORY, ME, ask
from services.model import Job, new_job_id

log = logging.getLogger(__name__)

END = ConversationHandler.END


async def advance(
    update: Update,
    context: Context,
    draft: Draft,
    note: str = "",
    extra: list[list[InlineKeyboardButton]] | None = None,
) -> object:
    """Asks for the next missing input, or submits when the draft is complete."""
    chat = update.effective_chat
    assert chat is not None and context.user_data is not None
    if draft.batch_go and draft.person is not None:
        return await start_batch(update, context, draft)
    step = draft.next_step()
    if step is None:
        return await submit(update, context, draft)
    save_draft(context.user_data, chat.id, draft)
    return await ask(update, context, draft, step, note, extra)


async def submit(update: Update, context: Context, draft: Draft) -> object:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None and draft.person is not None
    job = Job(
        id=new_job_id(),
        chat_id=chat.id,
        thread_id=draft.thread_id,
        user_id=user.id,
        lang=draft.lang,
        model=context.services.tryon_model,
        person=draft.person,
        top=draft.top,
        bottom=draft.bottom,
        request_message_id=draft.last_message_id,
        keep=draft.keep,
    )
    drop_draft(context.user_data, chat.id)
    # The job row, the dropped draft and the end of the flow: one transaction.
    refused = await start_tryon(context, job, flow_end(chat.id, user.id))
    if refused is not None:
        await say(update, context, refused)
    return END


# ---- entry points ----------------------------------------------------------------------


async def start_flow(update: Update, context: Context, *, greet: bool = False) -> object:
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    assert chat is not None and user is not None and context.user_data is not None
    lang = context.lang
    refused = await refused_at_start(context, user.id, lang)
    if refused is not None:
        await say(update, context, refused)
        drop_draft(context.user_data, chat.id)
        return END
    draft = Draft(lang=lang, thread_id=thread_of(message))
    if message is not None and update.callback_query is None:
        draft.last_message_id = message.message_id
    note = context.t("greeting") if greet else ""
    profile = await context.services.profiles.get(user.id)
    if profile is not None:
        draft.put(PERSON, profile)
        draft.from_profile = True
        note = "\n\n".join(filter(None, [note, context.t("using_saved_photo")]))
    return await advance(update, context, draft, note)


async def offer_results(update: Update, context: Context) -> None:
    chat, user = update.effective_chat, update.effective_user
    if chat is not None and user is not None:
        await offer_undelivered(context, chat.id, user.id)


async def on_start(update: Update, context: Context) -> object:
    await offer_results(update, context)
    return await start_flow(update, context, greet=True)


async def on_tryon(update: Update, context: Context) -> object:
    """/tryon; as a reply to a garment photo in the chat it starts with that garment."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    assert message is not None and chat is not None and user is not None
    assert context.user_data is not None
    await offer_results(update, context)
    target = message.reply_to_message
    garment = image_of(target) if target is not None else None
    if garment is None:
        return await start_flow(update, context)
    refused = await refused_at_start(context, user.id, context.lang)
    if refused is not None:
        await say(update, context, refused)
        return END
    album = seen_album(context, target) if target is not None else []
    if len(album) >= 2:  # replying to an album: several garments at once
        return await offer_seen_album(update, context, album)
    draft = Draft(lang=context.lang, thread_id=thread_of(message), pending_garment=garment)
    draft.last_message_id = message.message_id
    save_draft(context.user_data, chat.id, draft)
    markup = category_markup(context.texts, context.lang, user.id)
    await say(update, context, context.t("ask_category"), markup=markup)
    return CATEGORY


async def on_again(update: Update, context: Context) -> object:
    """'Another garment' under a result: same person, no need to send the photo again."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parsed = parse_callback(query.data)
    job = await button_job(update, context, parsed.argument if parsed else None)
    await query.answer()
    if job is None:
        return await start_flow(update, context)
    draft = Draft(lang=context.lang, thread_id=job.thread_id)
    draft.put(PERSON, job.person)
    draft.last_message_id = job.request_message_id
    return await advance(update, context, draft)


async def on_new(update: Update, context: Context) -> object:
    query = update.callback_query
    assert query is not None
    await query.answer()
    return await start_flow(update, context)


# ---- steps -----------------------------------------------------------------------------


def current_draft(update: Update, context: Context) -> Draft | None:
    chat = update.effective_chat
    assert chat is not None
    return load_draft(context.user_data, chat.id)


async def expired(update: Update, context: Context) -> object:
    await say(update, context, context.t("flow_expired"))
    return END


async def on_photo(update: Update, context: Context) -> object:
    """A photo at a photo step: check it, upload it, move on. Bad photos change nothing."""
    message = update.effective_message
    assert message is not None and context.user_data is not None
    draft = current_draft(update, context)
    step = draft.next_step() if draft else None
    if draft is None or step is None:
        return await expired(update, context)
    accepted = await accept_photo(update, context, draft, step)
    if accepted is None:
        return None
    draft.put(step, accepted)
    draft.last_message_id = message.message_id
    return await advance(update, context, draft, taken(update, context, step))


async def on_wrong_input(update: Update, context: Context) -> object:
    draft = current_draft(update, context)
    step = draft.next_step() if draft else None
    if draft is None:
        return await expired(update, context)
    key = "wrong_input_category" if draft.pending_garment else f"wrong_input_{step or BOTTOM}"
    await say(update, context, context.t(key, draft.lang), droppable=True)
    return None


async def on_skip(update: Update, context: Context) -> object:
    """/skip at a garment step: the model picks that garment."""
    return await without_new_garment(update, context, keep=False)


async def on_keep(update: Update, context: Context) -> object:
    """Keep mine: the person keeps their own top/bottom (found by the parsing model, which
    starts at once in the background)."""
    return await without_new_garment(update, context, keep=True)


async def without_new_garment(update: Update, context: Context, *, keep: bool) -> object:
    """A garment step passed without a photo (/skip or /keep). At least one garment must
    be new, and the person step cannot be passed."""
    if update.callback_query is not None:
        await update.callback_query.answer()
    draft = current_draft(update, context)
    step = draft.next_step() if draft else None
    if draft is None or step is None:
        return await expired(update, context)
    verb = "keep" if keep else "skip"
    if step == PERSON:
        await say(update, context, context.t(f"cannot_{verb}_person", draft.lang))
        return None
    if step == BOTTOM and draft.top is None:
        kept_top = draft.keep == TOP
        if keep:
            key = "cannot_keep_both" if kept_top else "cannot_keep_after_skip"
        else:
            key = "cannot_skip_kept" if kept_top else "cannot_skip_both"
        await say(update, context, context.t(key, draft.lang), force_reply=True)
        return None
    message = update.effective_message
    if update.callback_query is None and message is not None and draft.last_message_id is None:
        draft.last_message_id = message.message_id  # e.g. after a migration: reply to it
    if keep:
        assert draft.person is not None
        context.services.garments.prepare_keep(draft.person, step)
        draft.keep = step
    draft.put(step, None)
    return await advance(update, context, draft)


async def on_other_person(update: Update, context: Context) -> object:
    """'Use another photo' when the saved /me photo was picked automatically."""
    query = update.callback_query
    assert query is not None
    await query.answer()
    draft = current_draft(update, context)
    if draft is None:
        return await expired(update, context)
    draft.person, draft.from_profile = None, False
    draft.decided = [step for step in draft.decided if step != PERSON]
    return await advance(update, context, draft)


async def on_category(update: Update, context: Context) -> object:
    """'Try this on': the user says what the chosen garment is."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    parsed = parse_callback(query.data)
    draft = current_draft(update, context)
    if draft is None or draft.pending_garment is None or parsed is None:
        return await expired(update, context)
    kind = parsed.argument
    garment, draft.pending_garment = draft.pending_garment, None
    if kind == "bottom":
        draft.put(BOTTOM, garment)
    else:
        draft.put(TOP, garment)
        if kind == "dress":
            draft.dress = True
            draft.put(BOTTOM, None)
    with_profile = await context.services.profiles.get(query.from_user.id)
    note = ""
    if with_profile is not None:
        draft.put(PERSON, with_profile)
        draft.from_profile = True
        note = context.t("using_saved_photo", draft.lang)
    if isinstance(query.message, Message):
        await context.services.gateway.edit_markup(query.message)
    return await advance(update, context, draft, note)


async def on_cancel(update: Update, context: Context) -> object:
    chat = update.effective_chat
    assert chat is not None
    if update.callback_query is not None:
        await update.callback_query.answer()
        if isinstance(update.callback_query.message, Message):
            await context.services.gateway.edit_markup(update.callback_query.message)
    drop_draft(context.user_data, chat.id)
    await say(update, context, context.t("flow_canceled"))
    return END


# ---- wiring ----------------------------------------------------------------------------


def build_conversation() -> ConversationHandler[Any]:
    only_messages = filters.UpdateType.MESSAGE
    step_input = only_messages & INPUT_MESSAGE
    photo = step_input & PHOTO_INPUT
    other = step_input & ~filters.COMMAND & ~PHOTO_INPUT
    # An album's first item collects the album, then takes it as one input (albums.py).
    photo_step = [
        MessageHandler(photo & ALBUM_ITEM, on_album_item),
        MessageHandler(photo, on_photo),
        MessageHandler(other, on_wrong_input),
    ]
    skip = [
        CommandHandler("skip", on_skip, filters=only_messages),
        CallbackQueryHandler(on_skip, pattern=pattern(Action.SKIP)),
    ]
    keep = [
        CommandHandler("keep", on_keep, filters=only_messages),
        CallbackQueryHandler(on_keep, pattern=pattern(Action.KEEP)),
    ]
    album_fix = CallbackQueryHandler(on_album_fix, pattern=pattern(Action.ALBUM_FIX))
    with warnings.catch_warnings():
        # One flow per user and chat is the intent; per_message tracking is not wanted.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return ConversationHandler(
            name="tryon",
            persistent=True,
            allow_reentry=True,
            entry_points=[
                CommandHandler("start", on_start, filters=only_messages & filters.ChatType.PRIVATE),
                CommandHandler("tryon", on_tryon, filters=only_messages),
                CommandHandler("me", on_me, filters=only_messages),
                CallbackQueryHandler(on_again, pattern=pattern(Action.AGAIN)),
                CallbackQueryHandler(on_new, pattern=pattern(Action.NEW)),
                CallbackQueryHandler(ask_me_photo, pattern=pattern(Action.ME_SET)),
                CallbackQueryHandler(on_me_delete, pattern=pattern(Action.ME_DELETE)),
            ],
            states={
                PERSON: [*photo_step, *skip, *keep],
                TOP: [
                    *photo_step,
                    *skip,
                    *keep,
                    CallbackQueryHandler(on_other_person, pattern=pattern(Action.OTHER_PERSON)),
                    album_fix,
                ],
                BOTTOM: [*photo_step, *skip, *keep, album_fix],
                CONFIRM: [
                    CallbackQueryHandler(on_album_go, pattern=pattern(Action.ALBUM_GO)),
                    album_fix,
                    MessageHandler(step_input & ~filters.COMMAND, on_confirm_input),
                ],
                BATCH: [
                    CallbackQueryHandler(on_batch_each, pattern=pattern(Action.BATCH_EACH)),
                    CallbackQueryHandler(on_batch_pick, pattern=pattern(Action.BATCH_PICK)),
                    CallbackQueryHandler(on_batch_chosen, pattern=pattern(Action.BATCH_CHOSEN)),
                    MessageHandler(step_input & ~filters.COMMAND, on_batch_input),
                ],
                CATEGORY: [
                    CallbackQueryHandler(on_category, pattern=pattern(Action.CATEGORY)),
                    MessageHandler(step_input & ~filters.COMMAND, on_wrong_input),
                ],
                ME: [
                    MessageHandler(photo, on_me_photo),
                    MessageHandler(other, on_wrong_input),
                ],
            },
            fallbacks=[
                CommandHandler("cancel", on_cancel, filters=only_messages),
                CallbackQueryHandler(on_cancel, pattern=pattern(Action.CANCEL)),
            ],
        )
