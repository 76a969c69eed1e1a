"""Entry point: `python -m bot [command]` or the `tryon-bot [command]` console script.

Commands: `run` (the default: the bot itself) and `check` (the pre-flight, spends nothing).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from bot.logs import setup_logging
from bot.settings import Settings, SettingsError, load_settings
from bot.startup import InstanceLock, StartupError, check_data_dir, check_database

log = logging.getLogger("bot")
USAGE = "usage: tryon-bot [run | check]   (run is the default)"


def _settings() -> Settings | None:
    try:
        return load_settings()
    except SettingsError as error:
        for problem in error.problems:
            print(f"tryon-bot: {problem}", file=sys.stderr)
        return None


def run(argv: list[str]) -> int:
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

    return asyncio.run(run_check(argv))


# Subcommands by name; each takes the remaining arguments and returns the exit code.
COMMANDS: dict[str, Callable[[list[str]], int]] = {"run": run, "check": check}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args and not args[0].startswith("-") else "run"
    rest = args[1:] if args and name == args[0] else args
    if name in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(name)
    if command is None:
        print(f"tryon-bot: unknown command {name!r}; {USAGE}", file=sys.stderr)
        return 2
    return command(rest)


if __name__ == "__main__":
    sys.exit(main())
