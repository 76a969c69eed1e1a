"""Entry point: `python -m bot` or the `tryon-bot` console script.

tryon-bot                       run the bot (long polling)
tryon-bot backup PATH [--force] copy the database to PATH, also while the bot runs
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import NoReturn

from telegram import Update

from bot.app import STOP_SIGNALS_KEY, build_application
from bot.logs import setup_logging
from bot.settings import SettingsError, load_database_path, load_settings
from services.storage.backup import BackupError, backup_database

USAGE = "tryon-bot [backup PATH [--force]]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        print(f"tryon-bot: {message} (usage: {USAGE})", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tryon-bot", usage=USAGE, description="Virtual try-on bot.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    backup = commands.add_parser(
        "backup", usage="tryon-bot backup PATH [--force]", help="back up the database"
    )
    backup.add_argument("path", help="file to write the copy to")
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "backup":
        return backup(args.path, force=args.force)
    return run()


def backup(path: str, *, force: bool) -> int:
    source = load_database_path()
    try:
        result = backup_database(source, Path(path), force=force)
    except BackupError as error:
        print(f"tryon-bot: {error}", file=sys.stderr)
        return 1
    print(f"tryon-bot: backed up {source} to {result.target} ({result.size} bytes)")
    return 0


def run() -> int:
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
