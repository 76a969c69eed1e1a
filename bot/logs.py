"""Logging set-up: quiet HTTP client loggers and a filter that redacts secrets from every line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_BOT_URL_TOKEN = re.compile(r"bot\d{5,}:[A-Za-z0-9_-]{20,}|bot\d{5,}%3A[A-Za-z0-9_-]{20,}")
REDACTED = "<REDACTED>"


class RedactingFilter(logging.Filter):
    """Rewrites each record's final text so that no secret survives, whatever logged it.

    The record is formatted here (message + exception text) and frozen, so a token
    in an argument, an exception message or a traceback is caught as well.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
            text = text.replace(secret.replace(":", "%3A"), REDACTED)
        return _BOT_URL_TOKEN.sub("bot" + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.redact(record.getMessage())
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = self.redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record.msg, record.args = message, None
        return True


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """Configures the root logger; the filter sits on the handler so every logger is covered."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
