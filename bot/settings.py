"""Settings from the environment (and a `.env` file when present), validated at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from dotenv import dotenv_values

T = TypeVar("T")

_TOKEN_RE = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{20,}$")
MODELS = ("aitryon-plus", "aitryon")
DATABASE_NAME = "tryon.sqlite3"


class SettingsError(Exception):
    """A missing or invalid setting; its message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    telegram_bot_token: str = field(repr=False)
    dashscope_api_key: str = field(repr=False)
    telegram_api_base_url: str = "https://api.telegram.org"
    dashscope_http_base_url: str = "https://dashscope.aliyuncs.com/api/v1"
    tryon_model: str = "aitryon-plus"
    data_dir: Path = Path("./data")
    conversation_timeout: float = 1800.0
    max_concurrent: int = 5
    submit_qps: int = 10
    query_qps: int = 15
    poll_interval: float = 0.5
    task_deadline: float = 600.0
    user_daily_limit: int = 20
    daily_budget: int = 0
    allowed_chats: frozenset[int] = frozenset()
    max_image_side: int = 2048
    retry_attempts: int = 4
    retry_base_delay: float = 0.5
    request_timeout: float = 30.0
    status_interval: float = 5.0
    sweep_interval: float = 30.0
    retention_days: int = 30
    log_level: str = "INFO"
    hd: bool = True  # the ✨ HD button (aitryon-refiner)

    @property
    def database_path(self) -> Path:
        return self.data_dir / DATABASE_NAME


def _url(name: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(f"{name} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _number(kind: Callable[[str], T], low: float, high: float) -> Callable[[str, str], T]:
    def parse(name: str, value: str) -> T:
        try:
            number = kind(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {value!r}") from None
        if not low <= number <= high:  # type: ignore[operator]
            raise SettingsError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
        return number

    return parse


def _chat_ids(name: str, value: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in re.split(r"[,\s]+", value.strip()) if part)
    except ValueError:
        raise SettingsError(f"{name} must be a comma-separated list of chat ids") from None


def _model(name: str, value: str) -> str:
    if value not in MODELS:
        raise SettingsError(f"{name} must be one of {', '.join(MODELS)}, got {value!r}")
    return value


def _token(name: str, value: str) -> str:
    if not _TOKEN_RE.match(value):
        raise SettingsError(f"{name} does not look like a BotFather token (digits:secret)")
    return value


def _api_key(name: str, value: str) -> str:
    if len(value) < 8 or any(c.isspace() for c in value):
        raise SettingsError(f"{name} does not look like a DashScope API key")
    return value


def _on_off(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("on", "off"):
        raise SettingsError(f"{name} must be on or off, got {value!r}")
    return lowered == "on"


def _log_level(name: str, value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{name} must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level


# env name -> (Settings field, parser); required settings have no default in Settings.
_FIELDS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "TELEGRAM_BOT_TOKEN": ("telegram_bot_token", _token),
    "DASHSCOPE_API_KEY": ("dashscope_api_key", _api_key),
    "TELEGRAM_API_BASE_URL": ("telegram_api_base_url", _url),
    "DASHSCOPE_HTTP_BASE_URL": ("dashscope_http_base_url", _url),
    "TRYON_MODEL": ("tryon_model", _model),
    "TRYON_DATA_DIR": ("data_dir", lambda _n, v: Path(v)),
    "TRYON_CONVERSATION_TIMEOUT": ("conversation_timeout", _number(float, 1, 7 * 86400)),
    "TRYON_MAX_CONCURRENT": ("max_concurrent", _number(int, 1, 100)),
    "TRYON_SUBMIT_QPS": ("submit_qps", _number(int, 1, 100)),
    "TRYON_QUERY_QPS": ("query_qps", _number(int, 1, 100)),
    "TRYON_POLL_INTERVAL": ("poll_interval", _number(float, 0.01, 60)),
    "TRYON_TASK_DEADLINE": ("task_deadline", _number(float, 1, 3 * 3600)),
    "TRYON_USER_DAILY_LIMIT": ("user_daily_limit", _number(int, 0, 100_000)),
    "TRYON_DAILY_BUDGET": ("daily_budget", _number(int, 0, 10_000_000)),
    "TRYON_ALLOWED_CHATS": ("allowed_chats", _chat_ids),
    "TRYON_MAX_IMAGE_SIDE": ("max_image_side", _number(int, 150, 4096)),
    "TRYON_RETRY_ATTEMPTS": ("retry_attempts", _number(int, 1, 20)),
    "TRYON_RETRY_BASE_DELAY": ("retry_base_delay", _number(float, 0.001, 60)),
    "TRYON_REQUEST_TIMEOUT": ("request_timeout", _number(float, 0.1, 600)),
    "TRYON_STATUS_INTERVAL": ("status_interval", _number(float, 0.05, 600)),
    "TRYON_SWEEP_INTERVAL": ("sweep_interval", _number(float, 0.05, 3600)),
    "TRYON_RETENTION_DAYS": ("retention_days", _number(int, 1, 3650)),
    "TRYON_LOG_LEVEL": ("log_level", _log_level),
    "TRYON_HD": ("hd", _on_off),
}
REQUIRED = ("TELEGRAM_BOT_TOKEN", "DASHSCOPE_API_KEY")


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Reads settings; the process environment wins over the `.env` file."""
    values = _read_values(environ, env_file)
    kwargs: dict[str, object] = {}
    for name in REQUIRED:
        if not values.get(name, "").strip():
            raise SettingsError(f"{name} is required (see README: Settings)")
    for name, (attr, parse) in _FIELDS.items():
        raw = values.get(name, "").strip()
        if raw:
            kwargs[attr] = parse(name, raw)
    return Settings(**kwargs)  # type: ignore[arg-type]


def load_database_path(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Path:
    """The database's path from TRYON_DATA_DIR alone (`tryon-bot backup` needs no tokens)."""
    raw = _read_values(environ, env_file).get("TRYON_DATA_DIR", "").strip()
    return (Path(raw) if raw else Path("./data")) / DATABASE_NAME


def _read_values(environ: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values
