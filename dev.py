#!/usr/bin/env python3
"""Set-up and run, on a fresh machine with only Python 3.11+:

python3 dev.py bot     # create .venv, install the pinned dependencies, start the bot
python3 dev.py check   # same set-up, then the pre-flight check (spends nothing)
python3 dev.py test    # same set-up plus test tools, then ruff, mypy and pytest
python3 dev.py bench   # same set-up, then the benchmark (bench/run.py; extra args pass on)
python3 dev.py i18n    # extract the texts into the catalogs (handlers/texts/locales)
python3 dev.py i18n --init LOCALE   # start a new language's catalog, e.g. --init fr
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def say(text: str) -> None:
    print(f"dev.py: {text}", flush=True)


def _venv_works() -> bool:
    if not PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(PYTHON), "-m", "pip", "--version"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _fingerprint(lock: Path) -> str:
    return hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes()
        + lock.read_bytes()
        + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()


def ensure_env(extras: str) -> None:
    """Creates (or repairs) the virtualenv and installs the locked dependencies when they
    changed. The runtime set and the dev set (a superset) have their own stamps, so going
    from `test` back to `bot` installs nothing."""
    if sys.version_info < (3, 11):  # noqa: UP036 (a clear message on an old Python)
        sys.exit("Python 3.11 or newer is needed")
    if VENV.exists() and not _venv_works():
        say(f"{VENV} is incomplete (an interrupted set-up?); making it again")
        shutil.rmtree(VENV)
    if not VENV.exists():
        say(f"creating {VENV} …")
        venv.EnvBuilder(with_pip=True).create(VENV)
    runtime_lock, dev_lock = ROOT / "requirements.lock", ROOT / "requirements-dev.lock"
    runtime_stamp, dev_stamp = VENV / ".installed", VENV / ".installed-dev"
    dev_ok = dev_stamp.exists() and dev_stamp.read_text() == _fingerprint(dev_lock)
    if dev_ok or (
        not extras
        and runtime_stamp.exists()
        and runtime_stamp.read_text() == _fingerprint(runtime_lock)
    ):
        return
    lock = dev_lock if extras else runtime_lock
    count = sum(1 for line in lock.read_text().splitlines() if line.strip() and line[0] not in "#-")
    say(f"installing the pinned dependencies from {lock.name} ({count} packages) …")
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "--progress-bar", "on", "-r", str(lock)], check=True)
    say("installing this project (editable) …")
    subprocess.run([*pip, "--quiet", "--no-deps", "-e", str(ROOT)], check=True)
    runtime_stamp.write_text(_fingerprint(runtime_lock))
    if extras:
        dev_stamp.write_text(_fingerprint(dev_lock))
    say("set-up done")


def run(*args: str) -> int:
    return subprocess.call([str(PYTHON), *args], cwd=ROOT)


def replace_with(*args: str) -> None:
    """Becomes the given Python process (os.execv): signals reach it directly, and there is
    no child left behind when it is stopped."""
    os.chdir(ROOT)
    os.execv(str(PYTHON), [str(PYTHON), *args])


TEXTS = "handlers/texts"
POT = f"{TEXTS}/locales/messages.pot"


def i18n(rest: list[str]) -> int:
    """Extracts every message(key, text) / plural(key, one, many) of messages.py into the
    template, then brings each language's .po up to date (new messages empty, changed
    ones fuzzy: both fall back to English until translated)."""
    babel = ("-m", "babel.messages.frontend")
    extract = (*babel, "extract", "--no-default-keywords", "--no-location", "--no-wrap")
    keywords = ("-k", "message:1c,2", "-k", "plural:1c,2,3", "--add-comments=Translators:")
    project = ("--project=tryon-bot", "--copyright-holder=tryon-bot")
    if code := run(*extract, *keywords, *project, "-o", POT, f"{TEXTS}/messages.py"):
        return code
    catalogs = ("-i", POT, "-d", f"{TEXTS}/locales", "--no-wrap")
    if rest[:1] == ["--init"] and len(rest) == 2:
        return run(*babel, "init", *catalogs, "-l", rest[1])
    return run(*babel, "update", *catalogs, "--ignore-obsolete")


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    rest = sys.argv[2:]
    if command == "bot":
        ensure_env("")
        replace_with("-m", "bot", *rest)
    if command == "check":
        ensure_env("")
        replace_with("-m", "bot", "check", *rest)
    if command == "test":
        ensure_env("dev")
        for step in (("-m", "ruff", "check", "."), ("-m", "mypy")):
            if code := run(*step):
                return code
        return run("-m", "pytest", *rest)
    if command == "i18n":
        ensure_env("dev")
        return i18n(rest)
    if command == "bench":
        ensure_env("dev")
        return run("bench/run.py", *rest)
    print(__doc__)
    return 0 if command == "help" else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
    except subprocess.CalledProcessError as error:
        say(f"set-up failed ({error.returncode}); run the same command again to retry")
        sys.exit(1)
