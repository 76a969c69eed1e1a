"""The rooms stay apart: services/ knows nothing of Telegram, handlers/ nothing of bot/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(room: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    found = {}
    for path in sorted((ROOT / room).rglob("*.py")):
        bad = {m for m in imported_modules(path) if m.split(".")[0] in forbidden}
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("services", ("telegram", "handlers", "bot")),
        ("handlers", ("bot",)),
    ],
)
def test_imports_never_run_back_up(room: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(room, forbidden) == {}


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import telegram.ext\nfrom telegram import Bot\n")
    assert imported_modules(module) == {"telegram.ext", "telegram"}


def test_ptb_internals_are_used_in_one_module_only() -> None:
    users = [
        str(path.relative_to(ROOT))
        for room in ("bot", "handlers", "services")
        for path in (ROOT / room).rglob("*.py")
        if "telegram.ext._" in path.read_text("utf-8")
    ]
    assert users == ["handlers/ptb_internals.py"]
