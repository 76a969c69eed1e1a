"""/me: the user's saved person photo, so /tryon can skip step 1; and the gender HD uses
(shown, with buttons to change it)."""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import ConversationHandler

from handlers.bursts import taken
from handlers.common import PROMPT_MAX_WAIT, is_group, say, thread_of
from handlers.context import Context
from handlers.drafts import Draft, drop_draft, load_draft, save_draft
from handlers.inputs import accept_photo
from handlers.keyboards import PERSON, profile_markup
from handlers.prompts import ME

END = ConversationHandler.END


async def on_me(update: Update, context: Context) -> object:
    user, chat, message = update.effective_user, update.effective_chat, update.effective_message
    assert user is not None and chat is not None
    profile = await context.services.profiles.get(user.id)
    if profile is None:
        return await ask_me_photo(update, context)
    gender = await context.services.profiles.gender(user.id)
    gender_line = (
        context.t("me_gender", gender=context.t(f"gender_{gender}"))
        if gender
        else context.t("me_gender_unset")
    )
    await context.services.gateway.send_image(
        chat.id,
        profile.file_id,
        f"{context.t('me_current')}\n{gender_line}",
        thread_id=thread_of(message),
        # In groups, show whose photo it is.
        reply_to=message.message_id if message is not None and is_group(update) else None,
        markup=profile_markup(context.texts, context.lang, user.id),
        max_wait=PROMPT_MAX_WAIT,
    )
    return END


async def ask_me_photo(update: Update, context: Context) -> object:
    chat = update.effective_chat
    assert chat is not None and context.user_data is not None
    if update.callback_query is not None:
        await update.callback_query.answer()
    draft = Draft(lang=context.lang, thread_id=thread_of(update.effective_message))
    save_draft(context.user_data, chat.id, draft)
    user = update.effective_user
    markup = None
    if user is not None and not is_group(update):  # in groups the prompt is a ForceReply
        markup = profile_markup(context.texts, context.lang, user.id, photo=False)
    await say(update, context, context.t("ask_me"), force_reply=True, markup=markup)
    return ME


async def on_me_photo(update: Update, context: Context) -> object:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    draft = load_draft(context.user_data, chat.id) or Draft(lang=context.lang)
    accepted = await accept_photo(update, context, draft, PERSON)
    if accepted is None:
        return None
    await context.services.profiles.save(user.id, accepted)
    drop_draft(context.user_data, chat.id)
    note = taken(update, context, "me")
    await say(update, context, "\n\n".join(filter(None, [note, context.t("me_saved", draft.lang)])))
    return END


async def on_me_delete(update: Update, context: Context) -> object:
    query = update.callback_query
    assert query is not None
    await query.answer()
    await context.services.profiles.delete_photo(query.from_user.id)
    if isinstance(query.message, Message):
        await context.services.gateway.edit_caption(query.message, context.t("me_deleted"))
    return END
