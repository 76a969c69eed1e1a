"""What an album means at a step of the try-on: pure rules, no Telegram (unit-tested).

Telegram delivers an album as separate messages; once they are collected
(handlers/albums.py), `plan_album` decides which photo is the person, the top and the
bottom, or whether the album is a batch of garments to try one by one. Captions on the
items override the order ("me", "top", "bottom", "dress" and their Chinese words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from services.model import SLOTS

PERSON, TOP, BOTTOM = SLOTS
MAX_BATCH = 5  # garments a batch may try on (each is one paid try-on)

ROLE_WORDS: dict[str, tuple[str, ...]] = {
    "person": ("me", "person", "myself", "我", "人", "本人", "自己"),
    "top": ("top", "shirt", "上衣", "上装"),
    "bottom": ("bottom", "pants", "trousers", "skirt", "下装", "裤子", "裙子"),
    "dress": ("dress", "连衣裙"),
}
_WORD_ROLE = {word: role for role, words in ROLE_WORDS.items() for word in words}
_SPLIT = re.compile(r"[\s,.;:!?/|()\[\]\-，。；：！？、（）]+")

PlanKind = Literal["fill", "batch", "too_many", "several_people", "no_person"]


def role_of(caption: str | None) -> str | None:
    """The role a caption names ("Top", "我", "dress: blue"), or None."""
    if not caption:
        return None
    text = caption.strip().casefold()
    if text in _WORD_ROLE:
        return _WORD_ROLE[text]
    for token in _SPLIT.split(text):
        if token in _WORD_ROLE:
            return _WORD_ROLE[token]
    for word, role in _WORD_ROLE.items():  # Chinese captions have no spaces: "这是上衣"
        if not word.isascii() and len(word) > 1 and word in text:
            return role
    return None


@dataclass
class AlbumPlan:
    """Indexes into the album's items (0-based, in message order)."""

    kind: PlanKind
    person: int | None = None
    top: int | None = None
    bottom: int | None = None
    dress: bool = False
    garments: list[int] = field(default_factory=list)  # a batch's garments, in order
    batch_slot: str | None = None
    guessed: bool = False  # some role was taken from the order, not from a caption

    def roles(self) -> dict[int, str]:
        """item index -> "person" | "top" | "bottom" | "dress" for a fill."""
        found: dict[int, str] = {}
        if self.person is not None:
            found[self.person] = PERSON
        if self.top is not None:
            found[self.top] = "dress" if self.dress else TOP
        if self.bottom is not None:
            found[self.bottom] = BOTTOM
        return found


def plan_album(step: str, captions: list[str | None]) -> AlbumPlan:
    """What an album sent at `step` (the first missing one) means."""
    roles = [role_of(caption) for caption in captions]
    people = [i for i, role in enumerate(roles) if role == PERSON]
    if len(people) > 1:
        return AlbumPlan("several_people")
    person = people[0] if people else None
    guessed = False
    free = [i for i, role in enumerate(roles) if role is None]
    if step == PERSON and person is None:
        if not free:
            return AlbumPlan("no_person")
        person, free, guessed = free[0], free[1:], True
    garments = [i for i in range(len(roles)) if i != person]
    if not garments:
        return AlbumPlan("fill", person=person, guessed=guessed)
    if step == BOTTOM:  # the top is decided: every garment is a bottom
        return _choose(person, [], garments, guessed or bool(free), dress=False)
    tops = [i for i in garments if roles[i] in (TOP, "dress")]
    bottoms = [i for i in garments if roles[i] == BOTTOM]
    dress = any(roles[i] == "dress" for i in tops)
    uncaptioned = [i for i in garments if roles[i] is None]
    if uncaptioned:
        guessed = True
    if not tops and not bottoms:  # no captions: top then bottom, or several tops
        tops, bottoms = (
            (uncaptioned[:1], uncaptioned[1:])
            if len(uncaptioned) <= 2
            else (
                uncaptioned,
                [],
            )
        )
    else:
        for i in uncaptioned:  # fill an empty slot, else one more top to choose from
            if not tops:
                tops.append(i)
            elif not bottoms and len(tops) == 1 and not dress:
                bottoms.append(i)
            else:
                tops.append(i)
    return _choose(person, tops, bottoms, guessed, dress=dress)


def _choose(
    person: int | None, tops: list[int], bottoms: list[int], guessed: bool, *, dress: bool
) -> AlbumPlan:
    if len(tops) > 1 and len(bottoms) > 1:
        return AlbumPlan("too_many", person=person)
    if len(tops) > 1 or len(bottoms) > 1:
        slot, many, other = (TOP, tops, bottoms) if len(tops) > 1 else (BOTTOM, bottoms, tops)
        if len(many) > MAX_BATCH:
            return AlbumPlan("too_many", person=person)
        plan = AlbumPlan("batch", person=person, garments=many, batch_slot=slot, guessed=guessed)
        if other:
            if slot == TOP:
                plan.bottom = other[0]
            else:
                plan.top = other[0]
        return plan
    return AlbumPlan(
        "fill",
        person=person,
        top=tops[0] if tops else None,
        bottom=bottoms[0] if bottoms else None,
        dress=dress and bool(tops),
        guessed=guessed,
    )
