"""The package's layout: every module in a room, and rooms that import one way.

config <- data <- model <- inference <- training, engines <- cli: a module imports from its own
room and the rooms before it, never from a later one, and no two modules import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tagger"
ORDER = {"config": 0, "data": 1, "model": 2, "inference": 3, "training": 4, "engines": 4, "cli": 5}
TOP_LEVEL = {"__init__", "config", "cli"}


def modules() -> dict[str, Path]:
    """Dotted name (``data.readers.conllu``) -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"] = path
    return found


def imports(path: Path) -> set[str]:
    """The package modules ``path`` imports (at any depth: function-level imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tagger":
            base = node.module.removeprefix("tagger").lstrip(".")
            for alias in node.names:  # `from tagger.training import distributed` imports a module
                candidate = f"{base}.{alias.name}".lstrip(".")
                names.add(candidate if candidate in modules() else base or "__init__")
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("tagger.") for a in node.names if a.name.startswith("tagger."))
    return names


def room(module: str) -> str:
    return module.split(".")[0]


def test_every_module_lives_in_a_room():
    loose = [m for m in modules() if "." not in m and m not in TOP_LEVEL and m not in ORDER]
    assert loose == [], f"modules outside the rooms ({', '.join(ORDER)}): {loose}"


@pytest.mark.parametrize("module", sorted(m for m in modules() if m != "__init__"))
def test_rooms_import_one_way(module):
    later = sorted(i for i in imports(modules()[module])
                   if room(i) != room(module) and ORDER.get(room(i), 0) >= ORDER[room(module)])
    assert later == [], f"tagger.{module} imports from a later (or sibling) room: {later}"


def test_no_two_modules_import_each_other():
    graph = {m: imports(path) for m, path in modules().items()}
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                    if b != a and a in graph.get(b, ())})
    assert pairs == []
