"""Asking for the next step: buttons in private chats, a ForceReply in groups (privacy
mode delivers replies to the bot's own messages, and nothing else)."""

from __future__ import annotations

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.helpers import mention_html

from handlers.common import PROMPT_MAX_WAIT, is_group, say
from handlers.context import Context
from handlers.drafts import Draft
from handlers.keyboards import TOP, category_markup, other_person_row, step_markup

CATEGORY, ME = "category", "me"  # conversation states besides the photo steps


async def ask(
    update: Update,
    context: Context,
    draft: Draft,
    step: str,
    note: str = "",
    extra: list[list[InlineKeyboardButton]] | None = None,
) -> str:
    """Prompts for a step. Groups get a ForceReply, private chats get buttons; both
    mention the typed commands. `extra` rows (an album's fix buttons) go above the
    step's buttons, or in groups on the note, sent first."""
    user = update.effective_user
    assert user is not None
    texts = context.texts
    markup, reply_to = None, None
    if not is_group(update):
        markup = step_markup(
            texts,
            draft.lang,
            step,
            user.id,
            from_profile=draft.from_profile,
            after_top=draft.top is not None,
        )
        if extra:
            markup = InlineKeyboardMarkup([*extra, *markup.inline_keyboard])
    elif update.callback_query is not None:
        reply_to = draft.last_message_id  # after a button, reply to the user's last message
    if is_group(update) and step == TOP and draft.from_profile:
        # A message carries buttons or a ForceReply, not both: in groups the saved-photo
        # note comes first, with its "use another photo" button (the person step is skipped,
        # so the flow still takes no more messages).
        offer = note or context.t("using_saved_photo", draft.lang)
        other = InlineKeyboardMarkup([other_person_row(texts, draft.lang, user.id)])
        await say(
            update, context, offer, markup=other, reply_to=reply_to, thread_id=draft.thread_id
        )
        note = ""
    if is_group(update) and extra and note:
        await say(
            update,
            context,
            note,
            markup=InlineKeyboardMarkup(extra),
            reply_to=reply_to,
            thread_id=draft.thread_id,
        )
        note = ""
    text = context.t(f"ask_{step}", draft.lang)
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
        text = context.t("ask_category", draft.lang)
        markup = category_markup(context.texts, draft.lang, user_id)
    elif state == ME:
        text = context.t("ask_me", draft.lang)
    elif step is not None:
        text = context.t(f"ask_{step}", draft.lang)
    else:
        return
    await context.services.gateway.send_text(
        chat_id,
        f"{mention} {text}",
        thread_id=draft.thread_id,
        markup=markup,
        html=True,
        max_wait=PROMPT_MAX_WAIT,
    )
