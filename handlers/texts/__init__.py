"""The bot's texts in every language: gettext catalogs managed with Babel.

Public API:

- `Texts.load()`; `texts.get(lang, key, **values)` renders a message, `texts.get(lang, key,
  n=count, **values)` (or `texts.plural(lang, key, count, **values)`) a plural one;
  `texts.duration(lang, seconds)` a duration such as `3 h 20 min`.
- `language_for(telegram_language_code)`, `LANGUAGES` (the bot's codes), `LANGUAGE_INFO`
  (native names, locales, right-to-left), `DEFAULT_LANGUAGE`, `RTL_LANGUAGES`.
- `isolate(run, context)`: a name or other left-to-right run, isolated when the text it
  goes into is right-to-left.
- `MESSAGES`: every message, declared in English in `handlers/texts/messages.py`.
"""

from handlers.texts.catalog import (
    DEFAULT_LANGUAGE,
    LANGUAGE_INFO,
    LANGUAGE_LIST,
    LANGUAGES,
    RTL_LANGUAGES,
    Language,
    Texts,
    isolate,
    language_for,
    placeholders,
)
from handlers.texts.messages import MESSAGES, Message

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANGUAGE_INFO",
    "LANGUAGE_LIST",
    "MESSAGES",
    "RTL_LANGUAGES",
    "Language",
    "Message",
    "Texts",
    "isolate",
    "language_for",
    "placeholders",
]
