"""Layering rules of the experiments issue ("one fact in one place"), checked on the source.

* No module outside ``kernel_sim/monitors`` compares anything with a technique's name: what a
  technique needs is a question to its monitor class (``needs``, ``refusal``, ``guest_options``,
  ``strict_for``) or to :mod:`kernel_sim.experiments`.
* No module imports ``kernel_sim.__main__`` (the CLI is a leaf).
* An exercise check imports no Plotly module: checkers read numbers from ``experiments`` and
  ``lessons``, not from figure modules.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import kernel_sim
from kernel_sim.monitors import TECHNIQUE_ORDER

PACKAGE = Path(kernel_sim.__file__).resolve().parent
ROOT = PACKAGE.parent


def _modules(skip_monitors: bool = True):
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if skip_monitors and rel.parts[0] == "monitors":
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _strings(node) -> list[str]:
    """String constants of a comparison operand: a literal, or a tuple/list/set of literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def technique_name_comparisons(tree) -> list[tuple[int, str]]:
    """(line, name) of every comparison (==, !=, in, not in, is...) with a technique name."""
    names = set(TECHNIQUE_ORDER)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, s) for s in _strings(operand) if s in names]
    return found


def test_the_checker_finds_every_kind_of_comparison():
    source = ("a = t == 'paravirt'\nb = 'hw_ept' != t\nc = t in ('hw_shadow', 'hw_ept')\n"
              "d = t not in ['native']\ne = t in {'emulation'}\nf = t == 'not_a_technique'\n")
    found = technique_name_comparisons(ast.parse(source))
    assert [line for line, _ in found] == [1, 2, 3, 3, 4, 5]


def test_no_module_outside_monitors_tests_a_technique_name():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {name!r}"
                 for path, tree in _modules() for line, name in technique_name_comparisons(tree)]
    assert not offenders, ("ask the monitor class (needs, refusal, guest_options, strict_for) "
                           "or kernel_sim.experiments instead of testing technique names:\n"
                           + "\n".join(offenders))


def imports_of_main(path: Path, tree) -> list[int]:
    """Lines that import ``kernel_sim.__main__`` (absolute or relative)."""
    package = ".".join(("kernel_sim",) + path.relative_to(PACKAGE).parent.parts)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "kernel_sim.__main__" or a.name.endswith(".__main__")
                   for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
            if any(t == "kernel_sim.__main__" for t in targets):
                lines.append(node.lineno)
    return lines


def test_the_import_checker_sees_relative_imports_of_main():
    sub = PACKAGE / "viz" / "x.py"
    for source in ("from ..__main__ import main", "from .. import __main__",
                   "import kernel_sim.__main__", "from kernel_sim.__main__ import main"):
        assert imports_of_main(sub, ast.parse(source)) == [1], source
    assert imports_of_main(PACKAGE / "x.py", ast.parse("from .__main__ import main")) == [1]
    assert imports_of_main(sub, ast.parse("from .main import x")) == []


def test_no_module_imports_the_cli():
    offenders = [f"{path.relative_to(ROOT)}:{line}" for path, tree in _modules(False)
                 for line in imports_of_main(path, tree)]
    assert not offenders, "kernel_sim.__main__ is the CLI: nothing may import it\n" + \
        "\n".join(offenders)


#: one answer per exercise module, run through check() (right or wrong does not matter)
ANSWERS = {"nb00": ("00.1", 1), "nb01": ("01.1", "x"), "nb02": ("02.1", 1),
           "nb03": ("03.4", 1), "nb04": ("04.3", 1), "nb05": ("05.1", 1), "nb06": ("06.3", 1),
           "nb07": ("07.1", 1), "nb08": ("08.3", 1)}


def test_every_exercise_module_has_an_answer_here():
    found = {p.stem for p in (PACKAGE / "exercises").glob("nb*.py")}
    assert found == set(ANSWERS)


@pytest.mark.parametrize("module", sorted(ANSWERS))
def test_an_exercise_check_imports_no_plotly(module):
    exercise_id, answer = ANSWERS[module]
    code = (f"import sys, json, importlib\n"
            f"importlib.import_module('kernel_sim.exercises.{module}')\n"
            f"from kernel_sim.exercises import verdict\n"
            f"v = verdict({exercise_id!r}, {answer!r})\n"
            f"print(json.dumps([sorted(m for m in sys.modules if m.split('.')[0] == 'plotly'),"
            f" v.exercise_id]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    plotly, checked = json.loads(out.stdout.strip().splitlines()[-1])
    assert checked == exercise_id
    assert plotly == [], f"exercise module {module} pulled in {plotly[:5]}"
