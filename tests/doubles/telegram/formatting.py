"""Text formatting as Telegram applies it to what the bot sends.

Telegram's HTML parse mode (the only one the bot uses: it sends HTML), whitespace trimming, and
the ``bot_command``/``mention`` entities Telegram detects in every message
(tgapi#formatting-options). Other parse modes are kept verbatim.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.doubles.telegram.records import JSON, ApiError, bad_request

COMMAND_RE = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}")
BOT_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _parse_error(text: str) -> ApiError:
    return bad_request(f"can't parse entities: {text}")


_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


class _TelegramHTML(HTMLParser):
    """Telegram's HTML parse mode: the supported tags only, properly nested."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.parts: list[str] = []
        self.length = 0  # UTF-16 length of the plain text so far
        self.stack: list[tuple[str, int, JSON]] = []
        self.entities: list[JSON] = []

    def _byte_offset(self) -> int:
        line, column = self.getpos()
        lines = self.source.split("\n")
        index = sum(len(text) + 1 for text in lines[: line - 1]) + column
        return len(self.source[:index].encode())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        spoiler_span = tag == "span" and attributes.get("class") == "tg-spoiler"
        if tag not in _HTML_ENTITY_TYPES or (tag == "span" and not spoiler_span):
            raise _parse_error(
                f'Unsupported start tag "{tag}" at byte offset {self._byte_offset()}'
            )
        entity: JSON = {"type": _HTML_ENTITY_TYPES[tag]}
        if tag == "a":
            entity["url"] = attributes.get("href") or ""
        elif tag == "tg-emoji":
            entity["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif tag == "blockquote" and "expandable" in attributes:
            entity["type"] = "expandable_blockquote"
        elif tag == "code" and self.stack and self.stack[-1][0] == "pre":
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self.stack[-1][2]["language"] = language
        self.stack.append((tag, self.length, entity))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            raise _parse_error(f"Unexpected end tag at byte offset {self._byte_offset()}")
        open_tag, start, entity = self.stack.pop()
        if open_tag != tag:
            raise _parse_error(
                f"Unmatched end tag at byte offset {self._byte_offset()}, "
                f'expected "</{open_tag}>", found "</{tag}>"'
            )
        inside_pre = tag == "code" and self.stack and self.stack[-1][0] == "pre"
        if self.length > start and not inside_pre:
            self.entities.append({**entity, "offset": start, "length": self.length - start})

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        self.length += utf16_len(data)

    def result(self) -> tuple[str, list[JSON]]:
        self.feed(self.source)
        self.close()
        if self.stack:
            raise _parse_error(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"'
            )
        return "".join(self.parts), sorted(self.entities, key=lambda e: int(e["offset"]))


def _strip_text(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Telegram trims surrounding whitespace from texts and captions."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = utf16_len(text[: len(text) - len(text.lstrip())])
    limit = utf16_len(stripped)
    result: list[JSON] = []
    for entity in entities:
        start = max(0, int(entity["offset"]) - shift)
        end = min(limit, int(entity["offset"]) + int(entity["length"]) - shift)
        if end > start:
            result.append({**entity, "offset": start, "length": end - start})
    return stripped, result


def format_text(
    source: str, parse_mode: str | None, entities: list[JSON] | None = None
) -> tuple[str, list[JSON]]:
    """Plain text and entities of a text sent with `parse_mode` (or explicit `entities`)."""
    if entities is not None:
        text, found = source, list(entities)
    elif parse_mode is not None and parse_mode.lower() == "html":
        text, found = _TelegramHTML(source).result()
    else:  # no parse mode, or a Markdown mode (kept verbatim: the bot sends HTML)
        text, found = source, []
    text, found = _strip_text(text, found)
    return text, found + auto_entities(text, found)


def auto_entities(text: str, existing: list[JSON]) -> list[JSON]:
    """bot_command and mention entities, which Telegram detects in every message."""
    taken = {(int(e["offset"]), int(e["length"])) for e in existing}
    found: list[JSON] = []
    for kind, pattern in (("bot_command", COMMAND_RE), ("mention", MENTION_RE)):
        for match in pattern.finditer(text):
            offset = utf16_len(text[: match.start()])
            length = utf16_len(match.group())
            if (offset, length) not in taken:
                found.append({"type": kind, "offset": offset, "length": length})
    return sorted(found, key=lambda e: int(e["offset"]))


def entity_text(text: str, entity: JSON) -> str:
    encoded = text.encode("utf-16-le")
    start = int(entity["offset"]) * 2
    return encoded[start : start + int(entity["length"]) * 2].decode("utf-16-le")
