"""What a try-on says to its user: status lines, the result caption, failure notices.

Callback data formats live here too, because the handlers answer the buttons
that the pipeline sends.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from services.i18n import Texts

# Callback data: "<action>:<argument>:<owner user id>" (under Telegram's 64 bytes). The
# owner lets one guard refuse a button pressed by anyone else in a group.
CB_FULL = "full"  # send the full-size file of a job
CB_AGAIN = "again"  # same person as a job, another garment
CB_RETRY = "retry"  # run a job's inputs again (the user asks, so a new submit is fine)
CB_NEW = "new"  # start over


def callback(action: str, owner: int, argument: str = "-") -> str:
    return f"{action}:{argument}:{owner}"


def parse_callback(data: str) -> tuple[str, str, int] | None:
    parts = data.split(":")
    if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


# Failure kinds that a new attempt with the same photos may fix.
TRANSIENT_FAILURES = frozenset(
    {"throttled", "server_error", "network", "timeout", "unknown", "telegram", "interrupted"}
    | {"task_expired", "policy_expired", "submit_unknown"}
)
SERVICE_FAILURES = frozenset({"service_unavailable"})


def elapsed_text(texts: Texts, lang: str, seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return texts.get(lang, "elapsed_seconds", s=seconds)
    return texts.get(lang, "elapsed_minutes", m=seconds // 60, s=seconds % 60)


def status_text(
    texts: Texts, lang: str, stage: str, elapsed: float, position: int | None = None
) -> str:
    line = texts.get(lang, f"stage_{stage}", position=position or 1)
    return f"{line}\n{elapsed_text(texts, lang, elapsed)}"


def button(texts: Texts, lang: str, label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(texts.get(lang, label), callback_data=data)


def result_markup(texts: Texts, lang: str, job_id: str, owner: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [button(texts, lang, "btn_full_size", callback(CB_FULL, owner, job_id))],
            [
                button(texts, lang, "btn_again", callback(CB_AGAIN, owner, job_id)),
                button(texts, lang, "btn_new", callback(CB_NEW, owner)),
            ],
        ]
    )


def failure_markup(
    texts: Texts, lang: str, kind: str, job_id: str, owner: int
) -> InlineKeyboardMarkup | None:
    if kind in SERVICE_FAILURES:
        return None
    if kind in TRANSIENT_FAILURES:
        first = button(texts, lang, "btn_retry", callback(CB_RETRY, owner, job_id))
    else:
        first = button(texts, lang, "btn_again", callback(CB_AGAIN, owner, job_id))
    return InlineKeyboardMarkup([[first, button(texts, lang, "btn_new", callback(CB_NEW, owner))]])


def failure_text(texts: Texts, lang: str, kind: str) -> str:
    key = f"fail_{kind}"
    catalog = texts.catalogs.get(lang, {})
    return texts.get(lang, key if key in catalog else "fail_unknown")
