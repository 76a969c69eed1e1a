"""Message catalogs (English and Simplified Chinese), chosen from Telegram's language_code."""

from __future__ import annotations

import string
import tomllib
from importlib import resources
from typing import Any

LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"


def language_for(code: str | None) -> str:
    """zh, zh-hans, zh-TW… → Chinese; anything else (or unknown) → English."""
    return "zh" if code and code.lower().startswith("zh") else DEFAULT_LANGUAGE


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class Texts:
    def __init__(self, catalogs: dict[str, dict[str, str]]) -> None:
        self.catalogs = catalogs

    @classmethod
    def load(cls) -> Texts:
        folder = resources.files("services") / "locales"
        catalogs = {
            lang: tomllib.loads((folder / f"{lang}.toml").read_text("utf-8")) for lang in LANGUAGES
        }
        return cls(catalogs)

    def get(self, lang: str, key: str, **values: Any) -> str:
        catalog = self.catalogs.get(lang) or self.catalogs[DEFAULT_LANGUAGE]
        template = catalog.get(key) or self.catalogs[DEFAULT_LANGUAGE][key]
        return template.format(**values) if values else template
