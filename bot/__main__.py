"""Entry point: `python -m bot [command]` or the `tryon-bot [command]` console script.

tryon-bot                       run the bot (also `tryon-bot run`)
tryon-bot check                 the pre-flight: one line per check, spends nothing
tryon-bot backup PATH [--force] copy the database to PATH, also while the bot runs
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from bot.logs import setup_logging
from bot.settings import Settings, SettingsError, load_database_path, load_settings
from bot.startup import InstanceLock, StartupError, check_data_dir, check_database
from services.storage.backup import BackupError, backup_database

log = logging.getLogger("bot")
USAGE = "tryon-bot [run | check | backup PATH [--force]]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        print(f"tryon-bot: {message} (usage: {USAGE})", file=sys.stderr)
        sys.exit(2)


def _settings() -> Settings | None:
    try:
        return load_settings()
    except SettingsError as error:
        for problem in error.problems:
            print(f"tryon-bot: {problem}", file=sys.stderr)
        return None


def run(argv: list[str]) -> int:
    if argv:
        _Parser(prog="tryon-bot run", usage="tryon-bot [run]").parse_args(argv)
    settings = _settings()
    if settings is None:
        return 2
    setup_logging(settings.log_level, settings.secrets())
    for settings_note in settings.notes:
        log.warning("%s", settings_note)
    lock = InstanceLock(settings.data_dir)
    try:
        # The data dir and the lock come before anything else touches data or the network.
        if (note := check_data_dir(settings.data_dir)) is not None:
            log.info("%s", note)
        lock.acquire()
        check_database(settings.database_path)
        return asyncio.run(_serve(settings))
    except StartupError as error:
        print(f"tryon-bot: {error}", file=sys.stderr)
        return 1
    finally:
        lock.release()


async def _serve(settings: Settings) -> int:
    from bot.serve import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
    return 0


def check(argv: list[str]) -> int:
    from bot.check import run_check

    if argv:
        _Parser(prog="tryon-bot check", usage="tryon-bot check").parse_args(argv)
    return asyncio.run(run_check(argv))


def backup(argv: list[str]) -> int:
    parser = _Parser(prog="tryon-bot backup", usage="tryon-bot backup PATH [--force]")
    parser.add_argument("path", help="file to write the copy to")
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    args = parser.parse_args(argv)
    source = load_database_path()
    try:
        result = backup_database(source, Path(args.path), force=args.force)
    except BackupError as error:
        print(f"tryon-bot: {error}", file=sys.stderr)
        return 1
    print(f"tryon-bot: backed up {source} to {result.target} ({result.size} bytes)")
    return 0


# Subcommands by name; each takes the remaining arguments and returns the exit code.
COMMANDS: dict[str, Callable[[list[str]], int]] = {"run": run, "check": check, "backup": backup}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__.strip())
        return 0
    name = args[0] if args else "run"
    command = COMMANDS.get(name)
    if command is None:
        print(f"tryon-bot: unknown command {name!r} (usage: {USAGE})", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
