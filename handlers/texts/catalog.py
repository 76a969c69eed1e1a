"""Loads the gettext catalogs and renders messages: plurals, numbers, durations, RTL.

The `.po` files are read at start-up (with Babel, compiled in memory into standard
`gettext.GNUTranslations`), so a fresh clone needs no build step. A message missing from
a catalog (or marked fuzzy) falls back to English.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from handlers.texts.messages import MESSAGES, Message

DOMAIN = "messages"


@dataclass(frozen=True)
class Language:
    code: str  # the bot's own code, lower case (also Telegram's language_code for the menu)
    locale: str  # Babel/CLDR locale id, the catalog's folder name under locales/
    name: str  # the native name, on the /language buttons
    rtl: bool = False


# In the order of the /language buttons.
LANGUAGE_LIST: tuple[Language, ...] = (
    Language("en", "en", "English"),
    Language("zh-hans", "zh_Hans", "简体中文"),
    Language("zh-hant", "zh_Hant", "繁體中文"),
    Language("ru", "ru", "Русский"),
    Language("uk", "uk", "Українська"),
    Language("es", "es", "Español"),
    Language("pt-br", "pt_BR", "Português (Brasil)"),
    Language("id", "id", "Bahasa Indonesia"),
    Language("tr", "tr", "Türkçe"),
    Language("fa", "fa", "فارسی", rtl=True),
    Language("ar", "ar", "العربية", rtl=True),
    Language("uz", "uz_Latn", "Oʻzbekcha"),
    Language("hi", "hi", "हिन्दी"),
)
LANGUAGE_INFO: dict[str, Language] = {language.code: language for language in LANGUAGE_LIST}
LANGUAGES: tuple[str, ...] = tuple(LANGUAGE_INFO)
DEFAULT_LANGUAGE = "en"
RTL_LANGUAGES = frozenset(language.code for language in LANGUAGE_LIST if language.rtl)

_TRADITIONAL_CHINESE = {"hant", "tw", "hk", "mo"}
_ALIASES = {"in": "id", "pt": "pt-br", "uz": "uz", "iw": "en"}


def language_for(code: str | None) -> str:
    """The bot's language for a Telegram `language_code` (an IETF tag such as `pt-br`,
    `zh-hans`, `zh-TW`, `ru`); anything unknown is English."""
    if not code:
        return DEFAULT_LANGUAGE
    tag = code.strip().lower().replace("_", "-")
    if tag in LANGUAGE_INFO:
        return tag
    primary, *rest = tag.split("-")
    if primary == "zh":
        return "zh-hant" if _TRADITIONAL_CHINESE & set(rest) else "zh-hans"
    primary = _ALIASES.get(primary, primary)
    return primary if primary in LANGUAGE_INFO else DEFAULT_LANGUAGE


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# Unicode isolates keep left-to-right runs whole inside right-to-left text, and keep them
# from deciding the paragraph's direction: FSI … PDI around values, LRI … PDI around
# /commands and @usernames.
FSI, LRI, PDI = "\u2068", "\u2066", "\u2069"
_VALUE = re.compile(r"#?\{\w+\}")
_LTR_RUN = re.compile(r"(?<![\w/@])([/@][A-Za-z]\w*)")


@functools.lru_cache(maxsize=4096)
def isolate_ltr_runs(template: str) -> str:
    """A right-to-left template with its values, commands and usernames isolated."""
    template = _LTR_RUN.sub(lambda m: f"{LRI}{m.group(1)}{PDI}", template)
    return _VALUE.sub(lambda m: f"{FSI}{m.group(0)}{PDI}", template)


_RTL_LETTER = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")


def isolate(run: str, context: str) -> str:
    """`run` (a user's name, say) to put into `context`: isolated if the context is
    right-to-left, so a Latin name cannot turn the paragraph left-to-right."""
    return f"{FSI}{run}{PDI}" if _RTL_LETTER.search(context) else run


def _locales_folder() -> Traversable:
    return resources.files("handlers.texts") / "locales"


def load_catalog(lang: str, folder: Traversable | None = None) -> gettext.NullTranslations:
    """One language's catalog (English, the source language, has none: its texts are the
    msgids)."""
    info = LANGUAGE_INFO[lang]
    if lang == DEFAULT_LANGUAGE:
        return gettext.NullTranslations()
    path = (folder or _locales_folder()) / info.locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=info.locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out: they fall back to English
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class Texts:
    """Every language's messages. `get(lang, key, **values)` renders one; `lang` is one of
    LANGUAGES (anything else is English)."""

    def __init__(self, catalogs: Mapping[str, gettext.NullTranslations]) -> None:
        self.catalogs = dict(catalogs)
        self.catalogs.setdefault(DEFAULT_LANGUAGE, gettext.NullTranslations())

    @classmethod
    def load(cls, folder: Traversable | None = None) -> Texts:
        return cls({lang: load_catalog(lang, folder) for lang in LANGUAGES})

    @staticmethod
    def has(key: str) -> bool:
        return key in MESSAGES

    def template(self, lang: str, key: str, n: int | None = None) -> str:
        """The translated template, placeholders unfilled (and without RTL isolates)."""
        entry: Message = MESSAGES[key]
        catalog = self.catalogs.get(lang) or self.catalogs[DEFAULT_LANGUAGE]
        if entry.plural is None:
            return catalog.pgettext(key, entry.text)
        if n is None:
            raise TypeError(f"message {key!r} needs a count, n=")
        return catalog.npgettext(key, entry.text, entry.plural, n)

    def get(self, lang: str, key: str, n: int | None = None, **values: Any) -> str:
        """Renders a message; a plural message takes its count as `n` (also `{n}` in the
        text). Whole numbers are formatted for the language."""
        lang = lang if lang in self.catalogs else DEFAULT_LANGUAGE
        template = self.template(lang, key, n)
        if lang in RTL_LANGUAGES:
            template = isolate_ltr_runs(template)
        if n is not None:
            values["n"] = n
        if not values:
            return template
        formatted = {name: self.value(lang, value) for name, value in values.items()}
        return template.format(**formatted)

    def plural(self, lang: str, key: str, n: int, **values: Any) -> str:
        return self.get(lang, key, n=n, **values)

    def value(self, lang: str, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return format_decimal(value, locale=LANGUAGE_INFO[lang].locale)
        return value

    def duration(self, lang: str, seconds: float, *, whole_minutes: bool = False) -> str:
        """A duration in the language: `42 s`, `1 min 5 s`, `3 h 20 min`; with
        `whole_minutes` (rounded up): `5 min`, `3 h 20 min`."""
        seconds = max(0, int(seconds))
        if whole_minutes:
            seconds = -(-seconds // 60) * 60
        if seconds >= 3600:
            hours, rest = divmod(seconds, 3600)
            return self.get(
                lang,
                "duration_hm",
                hours=self.get(lang, "hours", n=hours),
                minutes=self.get(lang, "minutes", n=rest // 60),
            )
        if whole_minutes:
            return self.get(lang, "minutes", n=seconds // 60)
        if seconds >= 60:
            return self.get(
                lang,
                "duration_ms",
                minutes=self.get(lang, "minutes", n=seconds // 60),
                seconds=self.get(lang, "seconds", n=seconds % 60),
            )
        return self.get(lang, "seconds", n=seconds)
