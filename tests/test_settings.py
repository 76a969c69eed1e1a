import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings
from tests.harness import API_KEY, ROOT, TOKEN

BASE = {"TELEGRAM_BOT_TOKEN": TOKEN, "DASHSCOPE_API_KEY": API_KEY}


def test_defaults_match_the_readme() -> None:
    s = load_settings(BASE, env_file=None)
    assert s.telegram_api_base_url == "https://api.telegram.org"
    assert s.dashscope_http_base_url == "https://dashscope.aliyuncs.com/api/v1"
    assert s.tryon_model == "aitryon-plus"
    assert s.data_dir == Path("./data")
    assert s.conversation_timeout == 1800
    assert (s.max_concurrent, s.query_qps, s.user_daily_limit, s.daily_budget) == (5, 15, 20, 0)
    assert s.allowed_chats == frozenset()
    assert s.retention_days == 30
    assert s.hd is True


def test_hd_can_be_turned_off() -> None:
    assert load_settings({**BASE, "TRYON_HD": "off"}, env_file=None).hd is False
    assert load_settings({**BASE, "TRYON_HD": "ON"}, env_file=None).hd is True


def test_secrets_are_not_in_the_repr() -> None:
    assert TOKEN not in repr(load_settings(BASE, env_file=None))
    assert API_KEY not in repr(load_settings(BASE, env_file=None))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DASHSCOPE_API_KEY": API_KEY}, "TELEGRAM_BOT_TOKEN"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN}, "DASHSCOPE_API_KEY"),
        ({**BASE, "TELEGRAM_BOT_TOKEN": "nonsense"}, "TELEGRAM_BOT_TOKEN"),
        ({**BASE, "TRYON_MODEL": "wanx"}, "TRYON_MODEL"),
        ({**BASE, "TRYON_MAX_CONCURRENT": "many"}, "TRYON_MAX_CONCURRENT"),
        ({**BASE, "TRYON_QUERY_QPS": "0"}, "TRYON_QUERY_QPS"),
        ({**BASE, "TELEGRAM_API_BASE_URL": "ftp://x"}, "TELEGRAM_API_BASE_URL"),
        ({**BASE, "TRYON_ALLOWED_CHATS": "1,abc"}, "TRYON_ALLOWED_CHATS"),
        ({**BASE, "TRYON_RETENTION_DAYS": "0"}, "TRYON_RETENTION_DAYS"),
        ({**BASE, "TRYON_HD": "maybe"}, "TRYON_HD"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env, env_file=None)


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"TELEGRAM_BOT_TOKEN={TOKEN}\nDASHSCOPE_API_KEY={API_KEY}\nTRYON_MODEL=aitryon\n"
    )
    assert load_settings({}, env_file=env_file).tryon_model == "aitryon"
    assert (
        load_settings({"TRYON_MODEL": "aitryon-plus"}, env_file=env_file).tryon_model
        == "aitryon-plus"
    )
    assert load_settings(
        {"TRYON_ALLOWED_CHATS": "1, -100, 42"}, env_file=env_file
    ).allowed_chats == {1, -100, 42}


def test_missing_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DASHSCOPE_API_KEY": API_KEY},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tryon-bot: TELEGRAM_BOT_TOKEN is required (see README: Settings)"
    ]
    assert "Traceback" not in result.stderr + result.stdout
