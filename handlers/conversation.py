"""The try-on conversation: person photo → top → bottom → submit (diagram: conversation.mmd).

Photo steps and the steps that may submit run with block=False: checking a photo takes
a second or two, and posting a try-on's status message may wait out a group's flood
control; neither must hold up other users. Meanwhile the user's own messages reach the
WAITING handlers. Every step keeps its draft in user_data (persisted), so a restart
between steps loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

from telegram import (
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.helpers import mention_html
from telegram.warnings import PTBUserWarning

from handlers.common import (
    Context,
    conversation_tables,
    is_group,
    lang_of,
    say,
    services,
    spent,
    t,
    thread_of,
)
from handlers.drafts import Draft, drop_draft, load_draft, save_draft
from handlers.inputs import INPUT_MESSAGE, PHOTO_INPUT, image_of, reject_text
from handlers.keyboards import CB_AGAIN, CB_NEW, button, callback, parse_callback
from services.images.normalize import ImageRejected
from services.model import InputImage, Job, new_job_id
from services.tryon.quota import Refusal
from services.tryon.scheduler import QueueFull

log = logging.getLogger(__name__)

PERSON, TOP, BOTTOM, CATEGORY, ME = "person", "top", "bottom", "category", "me"
END = ConversationHandler.END
CB_SKIP, CB_CANCEL, CB_CATEGORY, CB_OTHER_PERSON = "skip", "cancel", "cat", "person"
CB_ME_SET, CB_ME_DELETE = "meset", "medel"


# ---- prompts ---------------------------------------------------------------------------


def _other_person_row(context: Context, draft: Draft, user_id: int) -> list[InlineKeyboardButton]:
    texts = services(context).texts
    return [button(texts, draft.lang, "btn_other_person", callback(CB_OTHER_PERSON, user_id))]


def _step_markup(context: Context, update: Update, draft: Draft, step: str) -> InlineKeyboardMarkup:
    user = update.effective_user
    assert user is not None
    lang = draft.lang
    row = []
    if step in (TOP, BOTTOM):
        row.append(button(services(context).texts, lang, "btn_skip", callback(CB_SKIP, user.id)))
    row.append(button(services(context).texts, lang, "btn_cancel", callback(CB_CANCEL, user.id)))
    rows = [row]
    if step == TOP and draft.from_profile:
        rows.insert(0, _other_person_row(context, draft, user.id))
    return InlineKeyboardMarkup(rows)


def _category_markup(context: Context, lang: str, user_id: int) -> InlineKeyboardMarkup:
    texts = services(context).texts
    kinds = [
        button(texts, lang, f"btn_kind_{kind}", callback(CB_CATEGORY, user_id, kind))
        for kind in ("top", "bottom", "dress")
    ]
    cancel = button(texts, lang, "btn_cancel", callback(CB_CANCEL, user_id))
    return InlineKeyboardMarkup([kinds, [cancel]])


async def ask(update: Update, context: Context, draft: Draft, step: str, note: str = "") -> str:
    """Prompts for a step. Groups get a ForceReply (privacy mode delivers replies to the
    bot), private chats get buttons; both mention the typed commands."""
    user = update.effective_user
    assert user is not None
    markup, reply_to = None, None
    if not is_group(update):
        markup = _step_markup(context, update, draft, step)
    elif update.callback_query is not None:
        reply_to = draft.last_message_id  # after a button, reply to the user's last message
    if is_group(update) and step == TOP and draft.from_profile:
        # A message carries buttons or a ForceReply, not both: in groups the saved-photo
        # note comes first, with its "use another photo" button (the person step is skipped,
        # so the flow still takes no more messages).
        offer = note or t(context, draft.lang, "using_saved_photo")
        other = InlineKeyboardMarkup([_other_person_row(context, draft, user.id)])
        await say(
            update, context, offer, markup=other, reply_to=reply_to, thread_id=draft.thread_id
        )
        note = ""
    text = t(context, draft.lang, f"ask_{step}")
    if note:
        text = f"{note}\n\n{text}"
    await say(
        update,
        context,
        text,
        markup=markup,
        force_reply=True,
        reply_to=reply_to,
        thread_id=draft.thread_id,
    )
    return step


async def ask_again(
    context: Context, chat_id: int, user_id: int, draft: Draft, state: object
) -> None:
    """Repeats a member's open prompt in another chat (a group that became a supergroup):
    there is no message of theirs to reply to there, so the ForceReply mentions them."""
    try:
        mention = (await context.bot.get_chat_member(chat_id, user_id)).user.mention_html()
    except TelegramError:
        mention = mention_html(user_id, "👤")
    step = draft.next_step()
    markup: InlineKeyboardMarkup | ForceReply = ForceReply(selective=True)
    if state == CATEGORY and draft.pending_garment is not None:
        text = t(context, draft.lang, "ask_category")
        markup = _category_markup(context, draft.lang, user_id)
    elif state == ME:
        text = t(context, draft.lang, "ask_me")
    elif step is not None:
        text = t(context, draft.lang, f"ask_{step}")
    else:
        return
    await context.bot.send_message(
        chat_id,
        f"{mention} {text}",
        parse_mode=ParseMode.HTML,
        reply_markup=markup,
        message_thread_id=draft.thread_id,
    )
    spent(context, chat_id)


async def advance(update: Update, context: Context, draft: Draft, note: str = "") -> object:
    """Asks for the next missing input, or submits when the draft is complete."""
    chat = update.effective_chat
    assert chat is not None and context.user_data is not None
    step = draft.next_step()
    if step is None:
        return await submit(update, context, draft)
    save_draft(context.user_data, chat.id, draft)
    return await ask(update, context, draft, step, note)


# ---- entry points ----------------------------------------------------------------------


async def refused_at_start(update: Update, context: Context, lang: str) -> bool:
    """Says so before asking for any photo when the user cannot start one more try-on."""
    user = update.effective_user
    assert user is not None
    svc = services(context)
    refusal = await svc.quota.check(user.id)
    if refusal is not None:
        await say(update, context, refusal_text(context, lang, refusal))
        return True
    if not svc.scheduler.has_room(user.id):
        await say(update, context, t(context, lang, "too_many_running"))
        return True
    return False


async def start_flow(update: Update, context: Context, *, greet: bool = False) -> object:
    chat, user, message = update.effective_chat, update.effective_user, update.effective_message
    assert chat is not None and user is not None and context.user_data is not None
    svc = services(context)
    lang = lang_of(update)
    if await refused_at_start(update, context, lang):
        drop_draft(context.user_data, chat.id)
        return END
    draft = Draft(lang=lang, thread_id=thread_of(message))
    if message is not None and update.callback_query is None:
        draft.last_message_id = message.message_id
    note = t(context, lang, "greeting") if greet else ""
    profile = await svc.profiles.get(user.id)
    if profile is not None:
        draft.put(PERSON, profile)
        draft.from_profile = True
        note = "\n\n".join(filter(None, [note, t(context, lang, "using_saved_photo")]))
    return await advance(update, context, draft, note)


async def on_start(update: Update, context: Context) -> object:
    return await start_flow(update, context, greet=True)


async def on_tryon(update: Update, context: Context) -> object:
    """/tryon; as a reply to a garment photo in the chat it starts with that garment."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None and context.user_data is not None
    target = message.reply_to_message
    garment = image_of(target) if target is not None else None
    if garment is None:
        return await start_flow(update, context)
    lang = lang_of(update)
    if await refused_at_start(update, context, lang):
        return END
    draft = Draft(lang=lang, thread_id=thread_of(message), pending_garment=garment)
    draft.last_message_id = message.message_id
    save_draft(context.user_data, chat.id, draft)
    user = update.effective_user
    assert user is not None
    await say(
        update,
        context,
        t(context, lang, "ask_category"),
        markup=_category_markup(context, lang, user.id),
    )
    return CATEGORY


async def on_again(update: Update, context: Context) -> object:
    """'Another garment' under a result: same person, no need to send the photo again."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    parsed = parse_callback(query.data)
    job = await services(context).store.get(parsed[1]) if parsed else None
    if job is None:
        return await start_flow(update, context)
    draft = Draft(lang=lang_of(update), thread_id=job.thread_id)
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
    await say(update, context, t(context, lang_of(update), "flow_expired"))
    return END


async def on_photo(update: Update, context: Context) -> object:
    """A photo at a photo step: check it, upload it, move on. Bad photos change nothing."""
    message = update.effective_message
    assert message is not None and context.user_data is not None
    draft = current_draft(update, context)
    step = draft.next_step() if draft else None
    if draft is None or step is None:
        return await expired(update, context)
    accepted = await check_photo(update, context, draft, step)
    if accepted is None:
        return None
    draft.put(step, accepted)
    draft.last_message_id = message.message_id
    return await advance(update, context, draft)


async def check_photo(
    update: Update, context: Context, draft: Draft, step: str
) -> InputImage | None:
    """Downloads, checks and uploads a photo; answers and returns None when it is refused."""
    message = update.effective_message
    assert message is not None
    image = image_of(message)
    if image is None:
        await say(update, context, t(context, draft.lang, f"wrong_input_{step}"))
        return None
    preparer = services(context).preparer
    reused = await preparer.reuse(image)
    if reused is not None:
        return reused  # a garment the group already tried on: checked and uploaded before
    try:
        checked = await preparer.check(image)
    except ImageRejected as error:
        await say(update, context, reject_text(context, draft.lang, error))
        return None
    except Exception:
        log.exception("Could not fetch a photo in chat %s", message.chat_id)
        await say(update, context, t(context, draft.lang, "download_failed"))
        return None
    preparer.prefetch(image, checked)
    return image


async def on_wrong_input(update: Update, context: Context) -> object:
    draft = current_draft(update, context)
    step = draft.next_step() if draft else None
    if draft is None:
        return await expired(update, context)
    key = "wrong_input_category" if draft.pending_garment else f"wrong_input_{step or BOTTOM}"
    await say(update, context, t(context, draft.lang, key))
    return None


async def on_skip(update: Update, context: Context) -> object:
    if update.callback_query is not None:
        await update.callback_query.answer()
    draft = current_draft(update, context)
    step = draft.next_step() if draft else None
    if draft is None or step is None:
        return await expired(update, context)
    if step == PERSON:
        await say(update, context, t(context, draft.lang, "cannot_skip_person"))
        return None
    if step == BOTTOM and draft.top is None:
        await say(update, context, t(context, draft.lang, "cannot_skip_both"), force_reply=True)
        return None
    message = update.effective_message
    if update.callback_query is None and message is not None and draft.last_message_id is None:
        draft.last_message_id = message.message_id  # e.g. after a migration: reply to /skip
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
    kind = parsed[1]
    garment, draft.pending_garment = draft.pending_garment, None
    if kind == "bottom":
        draft.put(BOTTOM, garment)
    else:
        draft.put(TOP, garment)
        if kind == "dress":
            draft.dress = True
            draft.put(BOTTOM, None)
    with_profile = await services(context).profiles.get(query.from_user.id)
    note = ""
    if with_profile is not None:
        draft.put(PERSON, with_profile)
        draft.from_profile = True
        note = t(context, draft.lang, "using_saved_photo")
    if query.message is not None and isinstance(query.message, Message):
        await query.message.edit_reply_markup(None)
        spent(context, query.message.chat_id)
    return await advance(update, context, draft, note)


REQUEUED_KEY = "requeued_updates"
MAX_REQUEUES = 5
STEP_WAIT = 60.0  # seconds an update waits for the user's previous step


def pending_step(update: Update, context: Context) -> asyncio.Task[Any] | None:
    """The task of the user's step still running (PTB's PendingState for this flow)."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None:
        return None
    for conversations in conversation_tables(context.application):
        task = getattr(conversations.get((chat.id, user.id)), "task", None)
        if isinstance(task, asyncio.Task):
            return task
    return None


async def on_waiting(update: Update, context: Context) -> object:
    """An update while the user's previous step still runs: wait for that step, then put the
    update back in the queue, so it is handled in order and in the step it was meant for
    (a quick /skip after a photo, or an album of person, top and bottom)."""
    task = pending_step(update, context)
    if task is not None:
        await asyncio.wait({task}, timeout=STEP_WAIT)
    requeued: dict[int, int] = context.bot_data.setdefault(REQUEUED_KEY, {})
    if len(requeued) > 1000:
        requeued.clear()
    count = requeued.get(update.update_id, 0)
    if count >= MAX_REQUEUES:
        requeued.pop(update.update_id, None)
        text = t(context, lang_of(update), "still_checking")
        if update.callback_query is not None:
            await update.callback_query.answer(text)
        else:
            await say(update, context, text)
        return None
    requeued[update.update_id] = count + 1
    await context.application.update_queue.put(update)
    return None


async def on_cancel(update: Update, context: Context) -> object:
    chat = update.effective_chat
    assert chat is not None
    if update.callback_query is not None:
        await update.callback_query.answer()
        if isinstance(update.callback_query.message, Message):
            await update.callback_query.message.edit_reply_markup(None)
            spent(context, chat.id)
    drop_draft(context.user_data, chat.id)
    await say(update, context, t(context, lang_of(update), "flow_canceled"))
    return END


# ---- /me: the saved person photo -------------------------------------------------------


async def on_me(update: Update, context: Context) -> object:
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None and chat is not None
    lang = lang_of(update)
    svc = services(context)
    profile = await svc.profiles.get(user.id)
    if profile is None:
        return await ask_me_photo(update, context)
    markup = InlineKeyboardMarkup(
        [
            [
                button(svc.texts, lang, "btn_me_replace", callback(CB_ME_SET, user.id)),
                button(svc.texts, lang, "btn_me_delete", callback(CB_ME_DELETE, user.id)),
            ]
        ]
    )
    message = update.effective_message
    await context.bot.send_photo(
        chat.id,
        profile.file_id,
        caption=t(context, lang, "me_current"),
        reply_markup=markup,
        message_thread_id=thread_of(message),
        reply_parameters=(  # in groups, show whose photo it is
            ReplyParameters(message.message_id, allow_sending_without_reply=True)
            if message is not None and is_group(update)
            else None
        ),
    )
    spent(context, chat.id)
    return END


async def ask_me_photo(update: Update, context: Context) -> object:
    chat = update.effective_chat
    assert chat is not None and context.user_data is not None
    if update.callback_query is not None:
        await update.callback_query.answer()
    draft = Draft(lang=lang_of(update), thread_id=thread_of(update.effective_message))
    save_draft(context.user_data, chat.id, draft)
    await say(update, context, t(context, draft.lang, "ask_me"), force_reply=True)
    return ME


async def on_me_photo(update: Update, context: Context) -> object:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    draft = current_draft(update, context) or Draft(lang=lang_of(update))
    accepted = await check_photo(update, context, draft, PERSON)
    if accepted is None:
        return None
    await services(context).profiles.save(user.id, accepted)
    drop_draft(context.user_data, chat.id)
    await say(update, context, t(context, draft.lang, "me_saved"))
    return END


async def on_me_delete(update: Update, context: Context) -> object:
    query = update.callback_query
    assert query is not None
    await query.answer()
    await services(context).profiles.delete(query.from_user.id)
    if isinstance(query.message, Message):
        await query.message.edit_caption(t(context, lang_of(update), "me_deleted"))
        spent(context, query.message.chat_id)
    return END


# ---- submitting ------------------------------------------------------------------------


def refusal_text(context: Context, lang: str, refusal: Refusal) -> str:
    hours, rest = divmod(int(refusal.resets_in), 3600)
    return t(context, lang, f"refused_{refusal.reason}", hours=hours, minutes=rest // 60)


async def submit(update: Update, context: Context, draft: Draft) -> object:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None and draft.person is not None
    svc = services(context)
    job = Job(
        id=new_job_id(),
        chat_id=chat.id,
        thread_id=draft.thread_id,
        user_id=user.id,
        lang=draft.lang,
        model=svc.settings.tryon_model,
        person=draft.person,
        top=draft.top,
        bottom=draft.bottom,
        request_message_id=draft.last_message_id,
    )
    drop_draft(context.user_data, chat.id)
    try:
        refusal = await svc.runner.launch(job, admit=lambda: svc.quota.check(user.id))
    except QueueFull:
        await say(update, context, t(context, draft.lang, "too_many_running"))
        return END
    if refusal is not None:
        await say(update, context, refusal_text(context, draft.lang, refusal))
    return END


# ---- wiring ----------------------------------------------------------------------------


def _cb(action: str) -> str:
    return rf"^{action}:"


def build_conversation() -> ConversationHandler[Any]:
    only_messages = filters.UpdateType.MESSAGE
    step_input = only_messages & INPUT_MESSAGE
    photo = step_input & PHOTO_INPUT
    other = step_input & ~filters.COMMAND & ~PHOTO_INPUT
    photo_step = [
        MessageHandler(photo, on_photo, block=False),
        MessageHandler(other, on_wrong_input),
    ]
    # Skipping (or picking "dress" with a saved photo) may submit, and posting the status
    # message waits out a group's flood control: that must not hold up everyone else.
    skip = [
        CommandHandler("skip", on_skip, filters=only_messages, block=False),
        CallbackQueryHandler(on_skip, pattern=_cb(CB_SKIP), block=False),
    ]
    with warnings.catch_warnings():
        # One flow per user and chat is the intent; per_message tracking is not wanted.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return _conversation_handler(only_messages, step_input, photo, other, photo_step, skip)


def _conversation_handler(
    only_messages: filters.BaseFilter,
    step_input: filters.BaseFilter,
    photo: filters.BaseFilter,
    other: filters.BaseFilter,
    photo_step: list[MessageHandler[Any, object]],
    skip: list[BaseHandler[Any, Any, object]],
) -> ConversationHandler[Any]:
    return ConversationHandler(
        name="tryon",
        persistent=True,
        allow_reentry=True,
        entry_points=[
            CommandHandler("start", on_start, filters=only_messages & filters.ChatType.PRIVATE),
            CommandHandler("tryon", on_tryon, filters=only_messages),
            CommandHandler("me", on_me, filters=only_messages),
            CallbackQueryHandler(on_again, pattern=_cb(CB_AGAIN)),
            CallbackQueryHandler(on_new, pattern=_cb(CB_NEW)),
            CallbackQueryHandler(ask_me_photo, pattern=_cb(CB_ME_SET)),
            CallbackQueryHandler(on_me_delete, pattern=_cb(CB_ME_DELETE)),
        ],
        states={
            PERSON: [*photo_step, *skip],
            TOP: [
                *photo_step,
                *skip,
                CallbackQueryHandler(on_other_person, pattern=_cb(CB_OTHER_PERSON)),
            ],
            BOTTOM: [*photo_step, *skip],
            CATEGORY: [
                CallbackQueryHandler(on_category, pattern=_cb(CB_CATEGORY), block=False),
                MessageHandler(step_input & ~filters.COMMAND, on_wrong_input),
            ],
            ME: [
                MessageHandler(photo, on_me_photo, block=False),
                MessageHandler(other, on_wrong_input),
            ],
            ConversationHandler.WAITING: [
                MessageHandler(step_input, on_waiting, block=False),
                CallbackQueryHandler(on_waiting, block=False),
            ],
        },
        fallbacks=[
            CommandHandler("cancel", on_cancel, filters=only_messages),
            CallbackQueryHandler(on_cancel, pattern=_cb(CB_CANCEL)),
        ],
    )
