"""One fact in one place, for the jitted kernels: no copied constants, no stale compiled kernels.

* The jitted modules (``cpu.py``, ``mmu.py``, ``monitors/emulation_kernel.py``) define no
  constant that :mod:`kernel_sim.isa` or :mod:`kernel_sim.state` (or a module they import) defines:
  they read it from there.  ``benchmarks/cref.c`` defines none either: it includes a header
  generated from the package.
* The state layout keeps the free slots its docstring promises.
* :mod:`kernel_sim.jit` keys Numba's on-disk cache on the text of every module a kernel imports,
  so changing a constant in ``isa.py`` or ``state.py`` recompiles the kernel.  Checked on the key
  itself and end to end, in fresh processes that share one cache directory -- together with the
  control experiment: without the locator, Numba runs the stale kernel.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_sim import isa, jit, mmu
from kernel_sim import state as S

PACKAGE = Path(jit.__file__).resolve().parent
REPO = PACKAGE.parent
CREF = REPO / "benchmarks" / "cref.c"


# ---------------------------------------------------------------------------------------------
# No copies
# ---------------------------------------------------------------------------------------------
def jitted_modules() -> list:
    """Every module of the package that compiles functions with Numba."""
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p != PACKAGE / "jit.py" and re.search(r"^\s*@njit", p.read_text(), re.M))


def defined_names(source: str) -> set:
    """Names a module assigns at module level (``X = 1``, ``X, Y = 1, 2``, ``X: int = 1``)."""
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def public_constants(module) -> set:
    """The integer constants a module offers (``isa.OP_*`` come from the table at import)."""
    return {n for n, v in vars(module).items()
            if n.isupper() and isinstance(v, int) and not isinstance(v, bool)}


FACTS = public_constants(isa) | public_constants(S)


def copies(path: Path, package_dir: Path = PACKAGE) -> set:
    """Constants ``path`` assigns although isa.py, state.py or a package module it imports
    already defines them."""
    owned = set(FACTS)
    for dep in jit.dependencies(path, package_dir):
        if dep != path.resolve():
            owned |= defined_names(dep.read_text())
    return defined_names(path.read_text()) & owned


def test_the_jitted_modules_are_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in jitted_modules()}
    assert {"cpu.py", "mmu.py", "monitors/emulation_kernel.py"} <= names


@pytest.mark.parametrize("path", jitted_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_jitted_module_copies_a_constant(path):
    found = copies(path)
    assert not found, (f"{path.name} defines {sorted(found)}, which isa.py/state.py (or a module "
                       f"it imports) already define: import them or read isa.X / S.X instead")


@pytest.mark.parametrize("path", jitted_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_jitted_modules_use_the_keyed_decorator(path):
    """``numba.njit`` directly would still be stamped by the locator, but might not be cached
    the same way; one decorator means one policy."""
    text = path.read_text()
    assert re.search(r"^from \.+jit import njit$", text, re.M), path.name
    assert not re.search(r"^\s*(from numba import|import numba)", text, re.M), path.name


def test_the_copy_detector_sees_a_copy(package_copy):
    """The rule above can fail: a module that repeats an opcode, a state index or an MMU
    constant it imports is caught."""
    module = package_copy / "probe.py"
    module.write_text("from .mmu import translate\nOP_ADD = 0x10\nC_PC, C_CPL = 0, 1\n"
                      "BUS_ERROR = -1000\nMY_OWN = 3\n")
    assert copies(module, package_copy) == {"OP_ADD", "C_PC", "C_CPL", "BUS_ERROR"}


def test_cref_defines_no_constant_of_the_package():
    """cref.c includes the generated header; its own #defines are its private markers only."""
    text = CREF.read_text()
    own = set(re.findall(r"^#define\s+(\w+)", text, re.M))
    own |= set(re.findall(r"\b(\w+)\s*=\s*0x", text.split("*/", 1)[1]))   # enum members
    assert own, "the pattern found nothing: cref.c changed shape"
    assert not own & (FACTS | public_constants(mmu)), sorted(own & (FACTS | public_constants(mmu)))
    assert '#include "kernel_sim_constants.h"' in text


def test_the_generated_header_has_every_constant():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run as bench
    finally:
        sys.path.pop(0)
    header = bench.constants_header()
    defined = dict(re.findall(r"^#define (\w+) \((-?\d+)LL\)$", header, re.M))
    assert {n: int(v) for n, v in defined.items() if n in FACTS} == {
        n: getattr(isa, n, getattr(S, n, None)) for n in FACTS}
    assert int(defined["BUS_ERROR"]) == mmu.BUS_ERROR


# ---------------------------------------------------------------------------------------------
# Free slots in the state layout
# ---------------------------------------------------------------------------------------------
def indices(prefix: str) -> dict:
    return {n: v for n, v in vars(S).items() if n.startswith(prefix) and isinstance(v, int)}


def test_the_layout_has_room_and_no_overlaps():
    ctrl = indices("C_")
    assert len(set(ctrl.values())) == len(ctrl) and max(ctrl.values()) < S.NUM_CTRL
    events = {n: v for n, v in indices("EV_").items() if n not in ("EV_VECTOR_BASE", "EV_OP_BASE")}
    assert sorted(events.values()) == list(range(S.NUM_NAMED_EVENTS)) == list(
        range(len(S.EVENT_NAMES)))
    assert S.NUM_CTRL - (max(ctrl.values()) + 1) >= 32, "fewer than 32 free ctrl slots"
    assert S.EV_VECTOR_BASE - S.NUM_NAMED_EVENTS >= 32, "fewer than 32 free event slots"
    assert S.EV_OP_BASE == S.EV_VECTOR_BASE + isa.NUM_VECTORS
    assert S.NUM_COUNTERS == S.EV_OP_BASE + 256
    costs = indices("K_")
    assert 256 <= min(costs.values()) and max(costs.values()) < S.NUM_COSTS


def test_the_docstring_table_of_free_slots_matches_the_layout():
    doc = S.__doc__
    first_free_ctrl = max(indices("C_").values()) + 1
    first_free_cost = max(indices("K_").values()) + 1
    expected = {
        "ctrl": (first_free_ctrl, S.NUM_CTRL - 1),
        "counters (named)": (S.NUM_NAMED_EVENTS, S.EV_VECTOR_BASE - 1),
        "costs (extras)": (first_free_cost, S.NUM_COSTS - 1),
    }
    for what, (lo, hi) in expected.items():
        row = re.search(rf"^{re.escape(what)}\s+(\d+)\.\.(\d+) \((\d+) slots\)", doc, re.M)
        assert row, f"no row for {what!r} in state.py's table of free slots"
        assert tuple(map(int, row.groups())) == (lo, hi, hi - lo + 1), (
            f"state.py's docstring says {what} {row.group(0).split(None, 1)[1]!r}; "
            f"the layout has {lo}..{hi}")
    for what, size in (("ctrl", S.NUM_CTRL), ("costs", S.NUM_COSTS),
                       ("counters", S.NUM_COUNTERS)):
        assert re.search(rf"^{what}\s+\w+\[{size}\]", doc, re.M), f"{what} size in the table"


# ---------------------------------------------------------------------------------------------
# The cache key
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package's sources (no caches) in a temporary directory."""
    target = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.nbi",
                                                                   "*.nbc"))
    return target


KERNELS = ("cpu.py", "mmu.py", "monitors/emulation_kernel.py")


def stamps(package_dir: Path) -> dict:
    return {k: jit.source_stamp(package_dir / k, package_dir) for k in KERNELS}


def touch(path: Path, text: str = "\n# changed\n") -> None:
    with path.open("a") as f:
        f.write(text)


def test_dependencies_follow_the_imports():
    deps = {p.relative_to(PACKAGE).as_posix() for p in jit.dependencies(PACKAGE / "cpu.py")}
    assert {"cpu.py", "mmu.py", "state.py", "isa.py", "jit.py"} <= deps
    assert not {"machine.py", "asm.py", "__init__.py"} & deps
    emu = {p.relative_to(PACKAGE).as_posix()
           for p in jit.dependencies(PACKAGE / "monitors" / "emulation_kernel.py")}
    assert {"isa.py", "state.py", "jit.py"} <= emu and "cpu.py" not in emu and "mmu.py" not in emu


def test_the_stamp_changes_with_every_dependency_and_only_with_them(package_copy):
    before = stamps(package_copy)
    assert before == stamps(PACKAGE), "a copy of the package has the same stamps"
    touch(package_copy / "asm.py")                       # not imported by any kernel
    touch(package_copy / "viz" / "__init__.py")
    assert stamps(package_copy) == before
    for name, changes in (("state.py", KERNELS), ("isa.py", KERNELS), ("jit.py", KERNELS),
                          ("mmu.py", ("cpu.py", "mmu.py")), ("cpu.py", ("cpu.py",))):
        old = stamps(package_copy)
        touch(package_copy / name)
        new = stamps(package_copy)
        assert {k for k in KERNELS if new[k] != old[k]} == set(changes), name


def test_a_new_module_imported_by_isa_counts_at_once(package_copy):
    """The coming abi.py (ports, system calls) will be imported by isa.py: it is part of every
    kernel's stamp as soon as the import line exists."""
    (package_copy / "newfacts.py").write_text("PORT_NEW = 0x40\n")
    touch(package_copy / "isa.py", "\nfrom .newfacts import PORT_NEW  # noqa\n")
    old = stamps(package_copy)
    touch(package_copy / "newfacts.py")
    assert all(stamps(package_copy)[k] != old[k] for k in KERNELS)


# ---------------------------------------------------------------------------------------------
# End to end: a changed constant reaches the kernel
# ---------------------------------------------------------------------------------------------
#: Runs in a fresh interpreter on the copied package: calls one small kernel, cpu.port_in, and
#: reports what it returned and whether Numba compiled it or loaded it from the cache.
PROGRAM = """
import json, sys
import numpy as np
from kernel_sim import jit
if sys.argv[1] == "plain":
    jit.uninstall()                     # Numba's own per-file source stamp
from kernel_sim import cpu
assert cpu.__file__.startswith(sys.argv[2]), cpu.__file__
ctrl = np.zeros(128, np.int64)
ctrl[9] = 1234                          # C_TICKS today
ctrl[10] = 77                           # C_TIMER_PERIOD today
ctrl[100] = 88                          # a free slot today
counters = np.zeros(1024, np.int64)
print(json.dumps({"port_0x21": int(cpu.port_in(0x21, ctrl, counters)),
                  "port_0x20": int(cpu.port_in(0x20, ctrl, counters)),
                  "compiled": sum(cpu.port_in.stats.cache_misses.values()),
                  "loaded": sum(cpu.port_in.stats.cache_hits.values())}))
"""


def run_program(package_dir: Path, cache: Path, mode: str = "keyed") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(package_dir.parent))
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode, str(package_dir)], env=env,
                         cwd=package_dir.parent, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def edit(package_dir: Path, pattern: str, replacement: str) -> None:
    """Change the one line of the package that matches ``pattern`` (wherever it lives: the
    ports may move from isa.py to another module that isa.py imports)."""
    hits = [p for p in package_dir.rglob("*.py") if re.search(pattern, p.read_text(), re.M)]
    assert len(hits) == 1, f"{pattern!r} found in {hits}"
    hits[0].write_text(re.sub(pattern, replacement, hits[0].read_text(), count=1, flags=re.M))


TICKS = r'Field\("ticks", 0x21\b'  # the ticks port, in abi.PORTS
PERIOD = r"^C_TIMER_PERIOD = 10\b"


def test_a_changed_constant_reaches_the_kernel(package_copy, tmp_path):
    cache = tmp_path / "numba-cache"
    first = run_program(package_copy, cache)
    assert first == {"port_0x21": 1234, "port_0x20": 77, "compiled": 1, "loaded": 0}
    again = run_program(package_copy, cache)
    assert again["loaded"] == 1 and again["compiled"] == 0, "an unchanged kernel is reused"
    edit(package_copy, TICKS, 'Field("ticks", 0x22')        # a port (abi.py)
    moved = run_program(package_copy, cache)
    assert moved["port_0x21"] == 0xFFFFFFFF and moved["compiled"] == 1, moved
    edit(package_copy, PERIOD, "C_TIMER_PERIOD = 100")    # a state index (state.py)
    assert run_program(package_copy, cache)["port_0x20"] == 88


def test_without_the_locator_numba_runs_the_stale_kernel(package_copy, tmp_path):
    """The control experiment: why :mod:`kernel_sim.jit` exists.  With Numba's own stamp (the
    text of cpu.py alone) the edit of isa.py goes unnoticed and the old port number, frozen
    into the cached machine code, is still used."""
    cache = tmp_path / "numba-cache"
    assert run_program(package_copy, cache, "plain")["compiled"] == 1
    edit(package_copy, TICKS, 'Field("ticks", 0x22')
    stale = run_program(package_copy, cache, "plain")
    assert stale["loaded"] == 1 and stale["port_0x21"] == 1234, (
        f"{stale}: Numba noticed the change by itself; kernel_sim/jit.py's locator may no "
        "longer be needed (update its docstring)")
