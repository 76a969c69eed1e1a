"""Every setting is in `.env.example` (with its default) and in the README table."""

from __future__ import annotations

import re
from dataclasses import fields

from bot.settings import REQUIRED, SETTING_NAMES, Settings, load_settings
from tests.harness import API_KEY, ROOT, TOKEN


def example_lines() -> dict[str, str]:
    """NAME -> value of every `NAME=value` or `# NAME=value` line of .env.example."""
    found = {}
    for line in (ROOT / ".env.example").read_text("utf-8").splitlines():
        match = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]+)=(.*)", line.strip())
        if match:
            found[match[1]] = match[2]
    return found


def test_env_example_lists_every_setting() -> None:
    assert set(example_lines()) == set(SETTING_NAMES)


def test_env_example_shows_the_real_defaults() -> None:
    env = {k: v for k, v in example_lines().items() if k not in REQUIRED}
    documented = load_settings(
        {**env, "TELEGRAM_BOT_TOKEN": TOKEN, "DASHSCOPE_API_KEY": API_KEY}, env_file=None
    )
    defaults = load_settings(
        {"TELEGRAM_BOT_TOKEN": TOKEN, "DASHSCOPE_API_KEY": API_KEY}, env_file=None
    )
    for field in fields(Settings):
        assert getattr(documented, field.name) == getattr(defaults, field.name), field.name


def test_readme_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, re.MULTILINE))
    assert table == set(SETTING_NAMES)


def test_to_env_round_trips() -> None:
    settings = load_settings(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "DASHSCOPE_API_KEY": API_KEY,
            "TRYON_ALLOWED_CHATS": "1,-100",
            "TRYON_ADMIN_IDS": "7",
            "TRYON_PRICES": "aitryon=0.25",
            "TRYON_HTTP_PORT": "8080",
            "TELEGRAM_WEBHOOK_URL": "https://example.org/hook",
            "TELEGRAM_WEBHOOK_SECRET": "s3cret",
        },
        env_file=None,
    )
    assert load_settings(settings.to_env(), env_file=None) == settings
