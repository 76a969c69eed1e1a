"""Entry point: `python -m bot` or the `tryon-bot` console script (long polling)."""

from __future__ import annotations

import signal
import sys

from telegram import Update

from bot.app import STOP_SIGNALS_KEY, build_application
from bot.logs import setup_logging
from bot.settings import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"tryon-bot: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, [settings.telegram_bot_token, settings.dashscope_api_key])
    application = build_application(settings)
    # The bot installs its own handlers (post_init): they stop all waiting on Telegram first.
    application.bot_data[STOP_SIGNALS_KEY] = (signal.SIGINT, signal.SIGTERM, signal.SIGABRT)
    # Updates sent while the bot was down are processed, not dropped.
    application.run_polling(
        allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
        drop_pending_updates=False,
        stop_signals=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
