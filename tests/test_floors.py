"""The package's floors (DESIGN.md §2, CONTRIBUTING.md): data flows one way, so does import.

engine < guests < monitors < experiments < lessons < views (viz, widgets, exercises) < tools.
A module may import from its own floor or a lower one, never from a higher one -- function-level
(lazy) imports included, since a lazy import is still a dependency.  Every module of the
package must belong to a floor, so a new top-level module has to be placed on purpose.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kernel_sim

PACKAGE = Path(kernel_sim.__file__).resolve().parent
FLOORS = ("engine", "guests", "monitors", "experiments", "lessons", "views", "tools")
#: first name below ``kernel_sim`` -> floor
PLACES = {
    **dict.fromkeys(("isa", "abi", "state", "asm", "jit", "mmu", "cpu", "vmx", "machine",
                     "costs", "results", "runner"), "engine"),
    **dict.fromkeys(("guest", "guests"), "guests"),
    "monitors": "monitors",
    "experiments": "experiments",
    "lessons": "lessons",
    **dict.fromkeys(("viz", "widgets", "exercises"), "views"),
    **dict.fromkeys(("tools", "__main__", "course"), "tools"),
}


def floor_of(module: str):
    """The floor of ``kernel_sim.x.y`` (None for the package root itself)."""
    parts = module.split(".")
    if parts[0] != "kernel_sim" or len(parts) == 1:
        return None
    return PLACES.get(parts[1], "unplaced")


def imports_of(source: str, module: str, is_package: bool):
    """``(line, imported module)`` for every import of a kernel_sim module in ``source``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("kernel_sim"):
                continue
            if node.module:
                yield node.lineno, target
            else:                                   # from . import x, y
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kernel_sim"):
                    yield node.lineno, alias.name


def upward_imports(source: str, module: str, is_package: bool = False):
    """Imports in ``source`` (the text of ``module``) that reach a higher floor."""
    here = floor_of(module)
    out = []
    for line, target in imports_of(source, module, is_package):
        there = floor_of(target)
        if here in (None, "unplaced") or there in (None, "unplaced"):
            continue
        if FLOORS.index(there) > FLOORS.index(here):
            out.append(f"{module}:{line} ({here}) imports {target} ({there})")
    return out


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        yield ".".join(parts), is_package, path.read_text(encoding="utf-8")


def test_every_module_of_the_package_is_on_a_floor():
    unplaced = sorted(m for m, _, _ in _modules() if floor_of(m) == "unplaced")
    assert not unplaced, ("place these modules on a floor (tests/test_floors.py PLACES and "
                          f"CONTRIBUTING.md): {unplaced}")


def test_no_module_imports_from_a_higher_floor():
    problems = [p for m, pkg, text in _modules() for p in upward_imports(text, m, pkg)]
    assert not problems, "imports that run back up the floors:\n" + "\n".join(problems)


@pytest.mark.parametrize("module, source, expected", [
    ("kernel_sim.cpu", "from .monitors import base\n", 1),            # engine -> monitors
    ("kernel_sim.cpu", "def f():\n    from .viz import style\n", 1),  # a lazy import counts
    ("kernel_sim.monitors.native", "from ..experiments import run\n", 1),
    ("kernel_sim.exercises.nb07", "from ..tools.compare import compare\n", 1),
    ("kernel_sim.lessons.rings", "from .. import widgets\n", 1),
    ("kernel_sim.viz.style", "from ..lessons import memory\nfrom .. import isa\n", 0),
    ("kernel_sim.tools.compare", "import kernel_sim.experiments\n", 0),
])
def test_the_floor_check_sees_an_upward_import(module, source, expected):
    assert len(upward_imports(source, module)) == expected
