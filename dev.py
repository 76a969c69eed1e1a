#!/usr/bin/env python3
"""Set-up and run, on a fresh machine with only Python 3.11+:

python3 dev.py bot     # create .venv, install the pinned dependencies, start the bot
python3 dev.py test    # same set-up plus test tools, then ruff, mypy and pytest
python3 dev.py bench   # same set-up, then the benchmark (bench/run.py; extra args pass on)
python3 dev.py i18n    # extract the texts into the catalogs (handlers/texts/locales)
python3 dev.py i18n --init LOCALE   # start a new language's catalog, e.g. --init fr
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def ensure_env(extras: str) -> None:
    """Creates the virtualenv and installs the locked dependencies when they changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 (a clear message on an old Python)
        sys.exit("Python 3.11 or newer is needed")
    if not PYTHON.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    lock = ROOT / ("requirements-dev.lock" if extras else "requirements.lock")
    fingerprint = hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes()
        + lock.read_bytes()
        + (ROOT / "pyproject.toml").read_bytes()
        + extras.encode()
    ).hexdigest()
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == fingerprint:
        return
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(lock)], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    stamp.write_text(fingerprint)


def run(*args: str) -> int:
    return subprocess.call([str(PYTHON), *args], cwd=ROOT)


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
        return run("-m", "bot", *rest)
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
    sys.exit(main())
