"""Every text the bot shows, in English, declared once under a stable key.

This module is the source of the gettext catalogs: `python3 dev.py i18n` extracts the
`message(key, text)` and `plural(key, singular, plural)` calls (the key becomes the
gettext context, msgctxt) into `locales/messages.pot` and updates every language's
`locales/<locale>/LC_MESSAGES/messages.po`. Placeholders are named, `{like_this}`; a plural
message is chosen by its count, `n`, which is also a placeholder. No HTML: texts are sent
with parse_mode HTML, so `<`, `>` and `&` must not appear.

A new message: declare it here (a key of lower-case words, the English text, a
`# Translators:` comment when the context is not obvious), use it with
`texts.get(lang, key, **values)` (or `context.t(key, **values)` in a handler), run
`python3 dev.py i18n`, translate its empty `msgstr` in every `.po`, and run the tests
(`tests/test_i18n.py` names any catalog that misses it). Changing an English text marks
its translations fuzzy (shown in English) until they are reviewed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    key: str
    text: str
    plural: str | None = None  # English plural form; None for a message without a count


MESSAGES: dict[str, Message] = {}


def message(key: str, text: str) -> Message:
    return _declare(Message(key, text))


def plural(key: str, singular: str, plural: str) -> Message:
    return _declare(Message(key, singular, plural))


def _declare(entry: Message) -> Message:
    if entry.key in MESSAGES:
        raise ValueError(f"message {entry.key!r} declared twice")
    MESSAGES[entry.key] = entry
    return entry


# ---- starting, help ----------------------------------------------------------------------

message(
    "greeting",
    "👋 Hi! I put clothes on people: send a photo of a person, then the clothes, "
    "and I'll show you how they look.",
)
message(
    "help",
    """👗 Virtual try-on

1. Send a photo of one person, whole body, facing the camera.
2. Send the top (shirt, jacket…); or /keep to keep the top you're wearing; or /skip \
to let the AI pick one.
3. Send the bottom (trousers, skirt…); or /keep, or /skip, the same way.
A dress goes in as the top; then /skip the bottom. At least one garment must be new.

Under a result: 🎲 Another take (the same photos, a new picture) and ✨ HD (a sharper, \
full-quality version). Each counts as a try-on.

Clear photos of the garment alone on a plain background work best. Photos or image files \
(JPEG, PNG, WEBP, BMP, HEIC) up to 20 MB. A try-on takes about 15–30 seconds.

/tryon start a try-on (in a group: reply /tryon to a garment photo to try it on)
/me save your own photo, so you can skip step 1
/compare put your last try-ons side by side
/history see your try-ons of the last 24 hours again
/cancel stop the current step or try-on
/language change the language
/forget delete everything I keep about you""",
)
message("idle_hint", "Send /tryon to start a try-on, or /help to see how it works.")

# ---- the three steps ---------------------------------------------------------------------

message(
    "ask_person",
    "📸 Step 1 of 3: send a photo of the person: one whole person, front view, clear light.",
)
message(
    "ask_top",
    "👕 Step 2 of 3: send the top garment (a dress counts as a top), /keep to keep the top "
    "you're wearing, or /skip to let the AI pick one.",
)
message(
    "ask_bottom",
    "👖 Step 3 of 3: send the bottom garment, /keep to keep the bottom you're wearing, or "
    "/skip to let the AI pick one. If you sent a dress, just /skip.",
)
message("ask_category", "What is this garment?")
message(
    "ask_me",
    "📸 Send a photo of yourself: whole body, facing the camera. "
    "I'll use it for your next try-ons.",
)
message("using_saved_photo", "I'll use your saved photo (/me).")
message("flow_expired", "That try-on was closed. Send /tryon to start a new one.")
message(
    "flow_timed_out",
    "⌛ Your try-on was closed after a long pause. Send /tryon whenever you want to start again.",
)
message("flow_canceled", "OK, canceled. Send /tryon to start again.")
message("wrong_input_person", "I need a photo of the person here (as a photo or an image file).")
message("wrong_input_top", "I need a photo of the top garment here, or /skip.")
message("wrong_input_bottom", "I need a photo of the bottom garment here, or /skip.")
message("wrong_input_category", "Please tap one of the buttons: top, bottom or dress.")
message("download_failed", "I couldn't fetch that photo from Telegram. Please send it again.")
message("cannot_skip_person", "The person photo can't be skipped: I need someone to dress!")
message(
    "cannot_skip_both",
    "You skipped the top, so I need the bottom garment: send its photo. (Or /cancel.)",
)

# ---- /me -----------------------------------------------------------------------------------

message("me_current", "This is your saved photo. New try-ons start with it.")
message("me_saved", "✅ Saved! /tryon will use this photo from now on.")
message("me_deleted", "🗑 Your saved photo is deleted.")

# ---- /language -----------------------------------------------------------------------------

message("language_prompt", "🌐 Choose the language I speak with you:")
# Translators: shown in the language just chosen; name that language.
message("language_set", "✅ From now on I'll speak English with you.")

# ---- quotas, queue, cancel, forget -----------------------------------------------------

# Translators: {wait} is a duration such as "3 h 20 min" (see duration_hm below).
message(
    "refused_daily_limit", "You've used all your try-ons for today. You can try again in {wait}."
)
message(
    "refused_budget",
    "The bot has reached its try-on limit for today. Please come back in {wait}.",
)
plural("tries_left", "{n} try-on left today", "{n} try-ons left today")
plural("ready_count", "{done} of {n} ready", "{done} of {n} ready")
message(
    "too_many_running",
    "You already have a try-on running and one waiting. "
    "Please wait for one to finish, then start again.",
)
message("nothing_to_cancel", "There's nothing to cancel.")
message(
    "cancel_too_late",
    "Your try-on is already being generated and can't be stopped now. "
    "The result will arrive in a few seconds.",
)
message(
    "cancel_submitting",
    "Your try-on is being sent to the service right now. "
    "If it starts, the result will arrive as usual.",
)
message("forgotten", "🧹 Done: I deleted your saved photo, unfinished try-ons and history.")

# ---- results and their buttons -------------------------------------------------------------

message("result_caption", "✨ Here's your try-on! Tap “Full size” for the uncompressed picture.")
message(
    "full_size_gone",
    "The full-size file is no longer available (results are kept for 24 hours).",
)
message("full_size_sending", "Sending the full-size file…")
message(
    "retry_unavailable", "This try-on can't be repeated any more. Send /tryon to start a new one."
)

# ---- guards and errors ---------------------------------------------------------------------

message("not_your_button", "This button belongs to someone else's try-on.")
message(
    "anonymous_admin",
    "You're posting as the group, so I can't tell who you are. "
    "Please switch to your own account, or message me privately.",
)
message("not_allowed", "Sorry, this bot is private and not available here.")
message("internal_error", "😕 Sorry, something went wrong on my side. Please try again.")

# ---- status line -------------------------------------------------------------------------

message("stage_preparing", "📥 Checking your photos…")
# Translators: {position} is a place in the queue: "#3" reads "third", not a count.
message("stage_waiting", "⏳ Waiting in line: #{position}")
message("stage_submitting", "📤 Sending to the try-on service…")
message("stage_queued_remote", "⏳ Queued at the try-on service…")
message("stage_generating", "✨ Generating your try-on (usually 15–30 s)…")
message("stage_sending", "📬 Almost there, sending the picture…")
# Translators: {time} is a duration such as "1 min 5 s".
message("elapsed", "⏱ {time}")

# ---- durations -----------------------------------------------------------------------------

plural("hours", "{n} h", "{n} h")
plural("minutes", "{n} min", "{n} min")
plural("seconds", "{n} s", "{n} s")
message("duration_hm", "{hours} {minutes}")
message("duration_ms", "{minutes} {seconds}")

# ---- buttons (keep them short: a phone shows about 24 characters) ------------------------

message("btn_full_size", "📎 Full size")
message("btn_again", "👕 Another garment")
message("btn_new", "🔄 Start over")
message("btn_retry", "🔁 Try again")
message("btn_skip", "⏭ Skip")
message("btn_cancel", "✖️ Cancel")
message("btn_other_person", "📸 Use another photo")
message("btn_kind_top", "👕 Top")
message("btn_kind_bottom", "👖 Bottom")
message("btn_kind_dress", "👗 Dress")
message("btn_me_replace", "📸 Replace")
message("btn_me_delete", "🗑 Delete")

# ---- photos refused at once ----------------------------------------------------------------

message(
    "reject_file_too_large",
    "That file is over 20 MB, which is too big for Telegram bots to download. "
    "Please send a smaller photo.",
)
message(
    "reject_unsupported_format",
    "I can't read that file as a picture. Please send a photo (JPEG, PNG, WEBP, BMP or HEIC).",
)
message(
    "reject_corrupt", "That picture seems damaged and I can't open it. Please send another one."
)
message(
    "reject_too_small",
    "That picture is only {width}×{height} px; I need at least 150 px on each side. "
    "Please send a larger one.",
)
message(
    "reject_too_many_pixels",
    "That picture is far too large (in pixels) to process. Please send a normal photo.",
)

# ---- failed try-ons ------------------------------------------------------------------------

message(
    "fail_invalid_person",
    "😕 The try-on didn't work: I need exactly one whole person, seen from the front, "
    "clearly visible. Please try another person photo.",
)
message(
    "fail_invalid_garment",
    "😕 The try-on didn't work: the garment photo wasn't usable. "
    "Use a photo of the garment alone, laid flat on a plain background.",
)
message(
    "fail_invalid_size",
    "😕 One of the photos has a size the service doesn't accept. Please try a different photo.",
)
message(
    "fail_invalid_url", "😕 The service couldn't read one of the photos. Please send them again."
)
message(
    "fail_invalid_input", "😕 The service didn't accept these photos. Please try different ones."
)
message(
    "fail_content_refused",
    "🚫 The service refused these images because of their content. Please try other photos.",
)
message(
    "fail_service_unavailable",
    "🛠 The try-on service is unavailable right now. "
    "The bot's owner has been notified; please try again later.",
)
message(
    "fail_throttled", "🚦 The try-on service is very busy right now. Please try again in a minute."
)
message("fail_server_error", "🛠 The try-on service had a problem. Please try again.")
message("fail_network", "📡 I couldn't reach the try-on service. Please try again.")
message("fail_timeout", "⌛ The try-on took far too long and was stopped. Please try again.")
message(
    "fail_task_expired",
    "⌛ This try-on's result has expired at the service (results are kept for 24 hours). "
    "Please try again.",
)
message("fail_policy_expired", "🛠 The upload to the try-on service failed. Please try again.")
message("fail_canceled", "✖️ Canceled. You won't be charged for this one.")
message(
    "fail_interrupted",
    "⚠️ The bot restarted just as your try-on was being sent, so I can't tell whether it "
    "started. Tap “Try again” to run it again.",
)
message(
    "fail_submit_unknown",
    "⚠️ The connection to the try-on service broke just as your try-on was sent, so I can't "
    "tell whether it started. Tap “Try again” to run it again.",
)
message("fail_telegram", "📡 I couldn't fetch your photos from Telegram. Please try again.")
message(
    "fail_undeliverable",
    "📡 Your try-on is ready, but Telegram didn't accept the picture. Tap “Try again” to "
    "have the same result sent again (it is kept for 24 hours; you won't be charged again).",
)
message("fail_unknown", "😕 Something went wrong with this try-on. Please try again.")
message(
    "fail_image_file_too_large",
    "One of your photos is over 20 MB. Please start over with a smaller photo.",
)
message(
    "fail_image_unsupported_format",
    "One of your files isn't a picture I can read. Please start over with photos.",
)
message(
    "fail_image_corrupt", "One of your pictures is damaged. Please start over with another one."
)
message(
    "fail_image_too_small",
    "One of your pictures is too small (under 150 px on a side). "
    "Please start over with a larger one.",
)
message(
    "fail_image_too_many_pixels",
    "One of your pictures is far too large to process. Please start over with a normal photo.",
)

# ---- command menu (BotFather's limit: 256 characters; keep them short) -------------------

message("cmd_tryon", "Try clothes on a person")
message("cmd_me", "Save, show or remove your photo")
message("cmd_cancel", "Stop the current step or try-on")
message("cmd_help", "How it works")
message("cmd_language", "Change the language")
message("cmd_forget", "Delete everything the bot keeps about you")


# ---- keep my own garment, another take, HD -----------------------------------------------

message("btn_keep_top", "👕 Keep my top")
message("btn_keep_bottom", "👖 Keep my bottom")
# Translators: the AI (the try-on model) chooses the garment.
message("btn_skip_top", "🎲 AI picks")
message("btn_skip_bottom", "🎲 AI picks")
message("btn_skip_dress", "🎲 AI picks / it's a dress")
message(
    "cannot_keep_person", "Send the person photo first; then you can keep what they're wearing."
)
message(
    "cannot_keep_both",
    "You're keeping your own top, so I need a new bottom garment: send its photo. (Or /cancel.)",
)
message(
    "cannot_keep_after_skip",
    "You left the top to the AI, so I need a new bottom garment: send its photo. (Or /cancel.)",
)
message(
    "cannot_skip_kept",
    "You're keeping your own top, so I need a new bottom garment: send its photo. (Or /cancel.)",
)
message("kept_missing_top", "I couldn't see a top on you, so the model picked one.")
message("kept_missing_bottom", "I couldn't see a bottom on you, so the model picked one.")
message("btn_take", "🎲 Another take")
message("btn_hd", "✨ HD")
message("btn_confirm", "✅ Yes, go ahead")
message("btn_gender_woman", "Woman")
message("btn_gender_man", "Man")
message(
    "ask_gender",
    "✨ For HD I need to know: is the person a woman or a man? "
    "I'll remember it (change it in /me).",
)
# Translators: {gender} is the word of gender_woman or gender_man.
message("gender_saved", "Saved: {gender}. HD uses it from now on.")
message("gender_woman", "woman")
message("gender_man", "man")
message("me_gender", "For HD: {gender}.")
message("me_gender_unset", "For HD: not set yet.")
plural(
    "paid_confirm",
    "This counts as one of your try-ons: {n} left today after it. Go ahead?",
    "This counts as one of your try-ons: {n} left today after it. Go ahead?",
)
message("hd_off", "HD isn't available on this bot right now.")
message("hd_caption", "✨ HD version, full quality.")
message("take_unavailable", "This try-on can't be taken again. Send /tryon to start a new one.")
message(
    "fail_hd_expired",
    "⌛ HD is no longer possible for this picture: results are kept for 24 hours. "
    "Run the try-on again, then tap ✨ HD.",
)
message(
    "fail_hd_unsupported",
    "HD isn't possible for this picture: it needs a try-on with a top, made at full "
    "resolution. Run a new try-on, then tap ✨ HD.",
)


# ---- bursts and flooding -----------------------------------------------------------------

message(
    "burst_taken_person",
    "📸 You sent several photos at once: I took the first one as the person photo and "
    "ignored the others. To use a different one, send /tryon and start over.",
)
message(
    "burst_taken_top",
    "📸 You sent several photos at once: I took the first one as the top and ignored the "
    "others. To use a different one, send /tryon and start over.",
)
message(
    "burst_taken_bottom",
    "📸 You sent several photos at once: I took the first one as the bottom and ignored the "
    "others. To try a different one, send /tryon once this try-on is done.",
)
message(
    "burst_taken_me",
    "📸 You sent several photos at once: I saved the first one as your photo and ignored "
    "the others. To use a different one, send /me.",
)
plural(
    "flood_muted",
    "🐢 That's a lot of messages very fast. I'll ignore your messages for the next "
    "{n} second, then we carry on where we left off.",
    "🐢 That's a lot of messages very fast. I'll ignore your messages for the next "
    "{n} seconds, then we carry on where we left off.",
)


# ---- delivery and busy service -----------------------------------------------------------

message("result_resending", "Sending your result again…")
message(
    "stage_busy",
    "🚦 The try-on service is very busy; your try-on is waiting in line and will start by itself…",
)

# ---- albums, batches, compare and history ------------------------------------------------

message("album_received", "📥 Got your album:")
message("album_role_person", "📸 Photo {number} → person")
message("album_role_top", "👕 Photo {number} → top")
message("album_role_bottom", "👖 Photo {number} → bottom")
message("album_role_dress", "👗 Photo {number} → dress")
message(
    "album_partial",
    "ℹ️ Only one photo of your album reached me: in groups I only see photos that reply to my "
    "message. I'm using this one; send the others as replies to my next message.",
)
message(
    "album_too_many",
    "That album has more garments than I can use at once. Send the person first, then up to "
    "{most} tops (or up to {most} bottoms) as an album, or caption each photo: “me”, “top”, "
    "“bottom” or “dress”. Nothing was tried on.",
)
message(
    "album_several_people",
    "That album has more than one photo captioned as the person. I can dress one person at a "
    "time: send the album again with one “me” photo. Nothing was tried on.",
)
message(
    "album_no_person",
    "I need a photo of the person first, and every photo of that album is captioned as a "
    "garment. Send the person photo, or caption it “me”. Nothing was tried on.",
)
message(
    "album_not_photo",
    "Item {number} of that album isn't a picture I can use. Please send the album again with "
    "photos only.",
)
message("album_photo_rejected", "Photo {number} of the album: {reason}")
message("album_confirm", "Tap “Try it on” if that's right, or fix it with the buttons.")
message(
    "album_confirm_hint", "Please tap “Try it on”, fix the photos with the buttons, or /cancel."
)
message("album_fixed", "✅ Fixed.")
message("btn_album_go", "✅ Try it on")
message("btn_album_swap", "⇄ Swap top and bottom")
message("btn_album_person_is_top", "⇄ Swap person and top")
message("btn_album_top_is_bottom", "👖 The garment is a bottom")

plural(
    "batch_offer_top",
    "You sent {n} top. Try it on (one try-on), or pick one?",
    "You sent {n} tops. Try each one on (one try-on per top, {n} try-ons), or pick one?",
)

plural(
    "batch_offer_bottom",
    "You sent {n} bottom. Try it on (one try-on), or pick one?",
    "You sent {n} bottoms. Try each one on (one try-on per bottom, {n} try-ons), or pick one?",
)

plural(
    "batch_quota_left",
    "You have {n} try-on left today.",
    "You have {n} try-ons left today.",
)

plural(
    "btn_batch_each",
    "👕 Try it on ({n})",
    "👕 Try each one on ({n})",
)
message("btn_batch_pick", "☝️ Pick one")
message("batch_which", "Which one? (numbers in the order of your album)")
message("batch_hint", "Please tap “Try each one on” or “Pick one”, or /cancel.")

plural(
    "batch_refused",
    "Trying each one on needs {n} try-on, but you have {left} left. Pick one instead, or send "
    "fewer.",
    "Trying each one on needs {n} try-ons, but you have {left} left. Pick one instead, or "
    "send fewer.",
)

plural(
    "batch_status",
    "🧺 {ready} of {n} ready",
    "🧺 {ready} of {n} ready",
)
message("batch_item_caption", "👕 {number}")
message("batch_item_failed", "⚠️ {number} didn't work: {reason}")
message("batch_all_failed", "😕 None of the garments worked:")

plural(
    "batch_done",
    "✨ Your try-on is above. Tap its number for the full size.",
    "✨ Your {n} try-ons are above. Tap a number for its full size, or compare them.",
)
message("btn_full_size_n", "📎 {number}")
message("btn_compare", "🆚 Compare")
message(
    "compare_none",
    "I need at least 2 of your try-ons from the last 24 hours to compare. Try on a few "
    "garments first.",
)
message("compare_caption", "🆚 Which one? 1–{count}, left to right.")
message("compare_poll_question", "Which one?")
message("compare_poll_option", "Number {number}")

plural(
    "compare_private_hint",
    "🆚 Your last try-on. Forward this picture to your friends to ask what they think.",
    "🆚 Your last {n} try-ons, left to right. Forward this picture to your friends to ask "
    "which one they like.",
)
message(
    "compare_failed",
    "I couldn't fetch your earlier results from Telegram. Please try again in a moment.",
)
message("history_empty", "No try-ons to show: results are kept for 24 hours.")
message(
    "history_title",
    "🕘 Your recent try-ons (newest first). Tap one to see it again; it costs nothing.",
)
message("history_item", "{number}. {when} UTC")
message("history_gone", "That try-on is no longer available.")
message("cmd_compare", "Compare your last try-ons")
message("cmd_history", "Your recent try-ons")
message("btn_retry_n", "🔁 {number}")
message("batch_retry_hint", "Tap a number to try that garment again.")
