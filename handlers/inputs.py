"""What counts as a photo, and which messages may feed a flow."""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.constants import ChatType
from telegram.ext import filters

from handlers.common import say
from handlers.context import Context
from handlers.drafts import Draft
from services.images.normalize import ImageRejected, RejectReason
from services.model import InputImage

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "heic", "heif", "gif", "tif", "tiff")

# Compressed photos, and images sent as files (iPhones send HEIC that way; some clients
# send application/octet-stream, hence the extensions). Content is checked after download.
PHOTO_INPUT = (
    filters.PHOTO
    | filters.Document.IMAGE
    | filters.Document.FileExtension("heic")
    | filters.Document.FileExtension("heif")
)


class _InputMessage(filters.MessageFilter):
    """Private messages, or, in groups, replies to this bot's own messages.

    With privacy mode on Telegram only delivers those anyway; with it off (or the bot
    an admin) this keeps a member's ordinary chat photos out of their flow.
    """

    def filter(self, message: Message) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        replied = message.reply_to_message
        return bool(replied and replied.from_user and replied.from_user.id == message.get_bot().id)


INPUT_MESSAGE = _InputMessage(name="InputMessage")


def image_of(message: Message | None) -> InputImage | None:
    """The image a message carries (largest photo size, or an image document)."""
    if message is None:
        return None
    if message.photo:
        largest = message.photo[-1]
        return InputImage(largest.file_id, largest.file_unique_id, largest.file_size)
    document = message.document
    if document is not None:
        mime = (document.mime_type or "").lower()
        name = (document.file_name or "").lower()
        if mime.startswith("image/") or name.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS:
            return InputImage(document.file_id, document.file_unique_id, document.file_size)
    return None


def reject_text(context: Context, lang: str, error: ImageRejected) -> str:
    key = f"reject_{error.reason.name.lower()}"
    if error.reason is RejectReason.TOO_SMALL:
        # Pixel sizes read as one token, "4096×149", without digit grouping.
        width, height = str(error.width or 0), str(error.height or 0)
        return context.t(key, lang, width=width, height=height)
    return context.t(key, lang)


async def accept_photo(
    update: Update, context: Context, draft: Draft, step: str
) -> InputImage | None:
    """The photo of this message, checked (and uploading); None, after an answer, if not."""
    message = update.effective_message
    assert message is not None
    image = image_of(message)
    if image is None:
        await say(update, context, context.t(f"wrong_input_{step}", draft.lang))
        return None
    try:
        return await context.services.intake.accept(image)
    except ImageRejected as error:
        await say(update, context, reject_text(context, draft.lang, error))
    except Exception:
        log.exception("Could not fetch a photo in chat %s", message.chat_id)
        await say(update, context, context.t("download_failed", draft.lang))
    return None
