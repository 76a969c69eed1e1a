"""Small helpers every handler uses: where the user is, and answering them there."""

from __future__ import annotations

from telegram import ForceReply, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType

from handlers.context import Context
from handlers.gateway import Urgency
from handlers.texts import isolate

# Seconds a prompt that met flood control may wait in its chat's outbox (in the background;
# the handler never waits) before it is given up.
PROMPT_MAX_WAIT = 300.0


def is_group(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def thread_of(message: Message | None) -> int | None:
    """The forum topic to stay in; a plain reply chain's thread id is not a topic."""
    if message is not None and message.is_topic_message:
        return message.message_thread_id
    return None


async def say(
    update: Update,
    context: Context,
    text: str,
    *,
    markup: InlineKeyboardMarkup | None = None,
    force_reply: bool = False,
    reply_to: int | None = None,
    thread_id: int | None = None,
    droppable: bool = False,
) -> Message | None:
    """Answers the user where they are: in groups it replies to them (and can force a
    reply, which is how photos reach a bot in privacy mode); in private it just talks.

    It never waits out flood control: under it, the message is queued and sent in the
    background (None is returned), or, if `droppable` (apologies, hints, refusals),
    dropped. Raises ChatUnreachable for a chat that blocked the bot."""
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None
    message = update.effective_message
    group = is_group(update)
    if reply_to is None and group and message is not None and update.callback_query is None:
        reply_to = message.message_id
    reply_markup: InlineKeyboardMarkup | ForceReply | None = markup
    if group and force_reply:
        reply_markup = ForceReply(selective=True)
        if user is not None and update.callback_query is not None:
            # A selective ForceReply reaches the users mentioned in the text.
            text = f"{isolate(user.mention_html(), text)} {text}"
    if thread_id is None:
        thread_id = thread_of(message)
    # Prompts are queued through flood waits (in a group, a lost prompt leaves the user
    # nothing to reply to), within a bound: the user is waiting on it.
    return await context.services.gateway.send_text(
        chat.id,
        text,
        thread_id=thread_id,
        reply_to=reply_to,
        markup=reply_markup,
        html=True,
        urgency=Urgency.NOTICE if droppable else Urgency.MUST,
        max_wait=PROMPT_MAX_WAIT,
    )
