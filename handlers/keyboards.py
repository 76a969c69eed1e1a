"""Buttons: callback data (one format, one parser) and every inline keyboard the bot shows.

Callback data is "<action>:<argument>:<owner user id>" (under Telegram's 64 bytes). The
owner lets one guard refuse a button pressed by anyone else in a group.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from handlers.texts import Texts
from services.model import GENDERS, SLOTS, FailureKind

# The conversation's photo steps are the job's input slots, in order.
PERSON, TOP, BOTTOM = SLOTS
STEPS = SLOTS
GARMENT_KINDS = ("top", "bottom", "dress")


class Action(enum.StrEnum):
    FULL = "full"  # send the full-size file of a job
    AGAIN = "again"  # same person as a job, another garment
    RETRY = "retry"  # run a failed job's inputs again (the user asks: a new submit is fine)
    NEW = "new"  # start over
    SKIP = "skip"
    CANCEL = "cancel"
    CATEGORY = "cat"  # "try this on": what the chosen garment is
    OTHER_PERSON = "person"  # not the saved /me photo: ask for a person photo
    ME_SET = "meset"
    ME_DELETE = "medel"
    LANGUAGE = "lang"  # /language: the argument is the chosen language's code
    KEEP = "keep"  # keep the person's own top/bottom at this step
    TAKE = "take"  # another take: the same inputs again, a new task
    TAKE_SURE = "takey"  # …confirmed, when few try-ons are left today
    HD = "hd"  # refine a result (aitryon-refiner)
    HD_SURE = "hdy"  # …confirmed, when few try-ons are left today
    GENDER = "gender"  # argument "<woman|man>-<job id or ->": for HD, kept in the profile
    ALBUM_FIX = "afix"  # an album's guessed role corrected: tb, pt or t2b
    ALBUM_GO = "go"  # try on what the album filled in
    BATCH_EACH = "each"  # try each garment of a batch on
    BATCH_PICK = "pick"  # pick one garment of a batch (shows the numbers)
    BATCH_CHOSEN = "chose"  # the number picked
    COMPARE = "cmp"  # collage of the last results (with a poll in groups)
    HISTORY = "hist"  # re-send a past result


@dataclass(frozen=True)
class Callback:
    action: Action
    argument: str
    owner: int


def callback(action: Action, owner: int, argument: str = "-") -> str:
    return f"{action.value}:{argument}:{owner}"


def parse_callback(data: str) -> Callback | None:
    parts = data.split(":")
    if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
        return None
    try:
        action = Action(parts[0])
    except ValueError:
        return None
    return Callback(action, parts[1], int(parts[2]))


def pattern(action: Action) -> str:
    """A CallbackQueryHandler pattern for one action."""
    return rf"^{action.value}:"


def button(texts: Texts, lang: str, label: str, data: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(texts.get(lang, label), callback_data=data)


def step_markup(
    texts: Texts,
    lang: str,
    step: str,
    owner: int,
    *,
    from_profile: bool,
    after_top: bool = False,
) -> InlineKeyboardMarkup:
    """The three ways on at a garment step: a photo (typed), keep mine, or the model picks
    (at step 3 after a top, also the choice for a dress)."""
    rows = []
    if step in (TOP, BOTTOM):
        skip = "btn_skip_dress" if step == BOTTOM and after_top else f"btn_skip_{step}"
        rows.append(
            [
                button(texts, lang, f"btn_keep_{step}", callback(Action.KEEP, owner)),
                button(texts, lang, skip, callback(Action.SKIP, owner)),
            ]
        )
    rows.append([button(texts, lang, "btn_cancel", callback(Action.CANCEL, owner))])
    if step == TOP and from_profile:
        rows.insert(0, other_person_row(texts, lang, owner))
    return InlineKeyboardMarkup(rows)


def other_person_row(texts: Texts, lang: str, owner: int) -> list[InlineKeyboardButton]:
    return [button(texts, lang, "btn_other_person", callback(Action.OTHER_PERSON, owner))]


def category_markup(texts: Texts, lang: str, owner: int) -> InlineKeyboardMarkup:
    kinds = [
        button(texts, lang, f"btn_kind_{kind}", callback(Action.CATEGORY, owner, kind))
        for kind in GARMENT_KINDS
    ]
    cancel = button(texts, lang, "btn_cancel", callback(Action.CANCEL, owner))
    return InlineKeyboardMarkup([kinds, [cancel]])


def profile_markup(
    texts: Texts, lang: str, owner: int, *, photo: bool = True
) -> InlineKeyboardMarkup:
    rows = []
    if photo:
        rows.append(
            [
                button(texts, lang, "btn_me_replace", callback(Action.ME_SET, owner)),
                button(texts, lang, "btn_me_delete", callback(Action.ME_DELETE, owner)),
            ]
        )
    rows.append(gender_row(texts, lang, owner))
    return InlineKeyboardMarkup(rows)


def gender_row(
    texts: Texts, lang: str, owner: int, job_id: str = "-"
) -> list[InlineKeyboardButton]:
    return [
        button(
            texts,
            lang,
            f"btn_gender_{gender}",
            callback(Action.GENDER, owner, f"{gender}-{job_id}"),
        )
        for gender in GENDERS
    ]


def result_markup(
    texts: Texts,
    lang: str,
    job_id: str,
    owner: int,
    *,
    hd: bool = False,
    compare: bool = False,
) -> InlineKeyboardMarkup:
    second = [button(texts, lang, "btn_take", callback(Action.TAKE, owner, job_id))]
    if hd:
        second.append(button(texts, lang, "btn_hd", callback(Action.HD, owner, job_id)))
    rows = [
        [button(texts, lang, "btn_full_size", callback(Action.FULL, owner, job_id))],
        second,
        [
            button(texts, lang, "btn_again", callback(Action.AGAIN, owner, job_id)),
            button(texts, lang, "btn_new", callback(Action.NEW, owner)),
        ],
    ]
    if compare:  # in groups: "which one?" with the user's last results
        rows.append([button(texts, lang, "btn_compare", callback(Action.COMPARE, owner))])
    return InlineKeyboardMarkup(rows)


def confirm_markup(
    texts: Texts, lang: str, action: Action, job_id: str, owner: int
) -> InlineKeyboardMarkup:
    """ "Yes, go" for a paid action when few try-ons are left today."""
    return InlineKeyboardMarkup(
        [[button(texts, lang, "btn_confirm", callback(action, owner, job_id))]]
    )


def failure_markup(
    texts: Texts, lang: str, kind: FailureKind, job_id: str, owner: int
) -> InlineKeyboardMarkup | None:
    if kind.operator_problem:
        return None
    if kind.transient:
        first = button(texts, lang, "btn_retry", callback(Action.RETRY, owner, job_id))
    else:
        first = button(texts, lang, "btn_again", callback(Action.AGAIN, owner, job_id))
    new = button(texts, lang, "btn_new", callback(Action.NEW, owner))
    return InlineKeyboardMarkup([[first, new]])
