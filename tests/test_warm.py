"""The warm-up really warms: after ``warm_all()`` the course's code compiles nothing new.

Numba compiles a jitted function once per combination of argument *types* (its "signature").
``course.setup()`` calls :func:`kernel_sim.tools.warm.warm_all` so that the compile -- or the load from
the on-disk cache -- happens in the first cell, with a message, instead of silently in some later
cell.  That only works if every jitted call the notebooks make uses a signature the warm-up
already produced.  These tests run the notebooks' experiments after ``warm_all()`` and watch two
things:

* Numba's ``numba:compile`` event, which fires only for a real compilation (not for a load from
  the cache);
* the signatures of every Numba dispatcher in the ``kernel_sim`` package, so that even a new
  signature that happens to be in the on-disk cache (a load, not a compile) is noticed.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

numba = pytest.importorskip("numba")
from numba.core import event as numba_event  # noqa: E402
from numba.core.dispatcher import Dispatcher  # noqa: E402

from kernel_sim.tools.warm import warm_all  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def dispatcher_signatures() -> dict:
    """``{"module.function": set of signatures}`` for every jitted function kernel_sim loaded."""
    out = {}
    for name, module in list(sys.modules.items()):
        if not (name == "kernel_sim" or name.startswith("kernel_sim.")) or module is None:
            continue
        for attr, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == name:
                out[f"{name}.{attr}"] = set(obj.signatures)
    return out


class CompileRecorder(numba_event.Listener):
    """Collects the names of functions Numba compiles while it is installed."""

    def __init__(self):
        self.compiled = []

    def on_start(self, event):
        data = event.data or {}
        dispatcher = data.get("dispatcher")
        name = getattr(getattr(dispatcher, "py_func", None), "__qualname__", repr(dispatcher))
        self.compiled.append(f"{name}{tuple(data.get('args', ()))}")

    def on_end(self, event):
        pass


@contextlib.contextmanager
def no_new_compilation(what: str):
    """Fail if the body compiles a jitted function or adds a signature to one."""
    before = dispatcher_signatures()
    assert "kernel_sim.cpu.run_native" in before, "the warm-up did not load the CPU kernel"
    recorder = CompileRecorder()
    with numba_event.install_listener("numba:compile", recorder):
        yield
    after = dispatcher_signatures()
    added = {name: sorted(map(str, sigs - before.get(name, set())))
             for name, sigs in after.items() if sigs - before.get(name, set())}
    assert not recorder.compiled and not added, (
        f"{what} compiled after warm_all(): {recorder.compiled or added}. "
        "Make kernel_sim/tools/warm.py call these kernels with the same argument types.")


@pytest.fixture(scope="module")
def warmed():
    warm_all()


def test_the_recorder_sees_a_compilation():
    """The detector itself works: a brand-new jitted function is reported."""
    @numba.njit
    def double(x):
        return 2 * x

    recorder = CompileRecorder()
    with numba_event.install_listener("numba:compile", recorder):
        assert double(21) == 42
    assert len(recorder.compiled) == 1 and "double" in recorder.compiled[0]


def test_rings_runner_and_history_experiments_compile_nothing(warmed):
    """Every experiment behind notebooks 00-02, with every setting their widgets offer."""
    from kernel_sim import run_source
    from kernel_sim.lessons import history, rings
    from kernel_sim.exercises.nb00 import HELLO

    with no_new_compilation("the notebooks' experiments"):
        assert run_source(HELLO, "hello.s").stop
        history.run_two_machines("AB")
        for strict in (False, True):
            for ring in range(4):
                for name in rings.PROGRAMS:
                    rings.probe(name, ring, strict=strict)
        rings.compare_rings("privileged mix")
        assert rings.syscall_path().steps
        # other machine sizes (memory, TLB, page-table levels): same argument types
        run_source(HELLO, "hello.s", paging_levels=4, tlb_size=1, memory_size=1 << 16)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_compiles_nothing_after_warm_up(path, warmed):
    """Run a notebook's code cells in this process (no kernel, outputs discarded)."""
    from IPython.core.inputtransformer2 import TransformerManager

    transform = TransformerManager().transform_cell
    cells = [(i, c) for i, c in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"])
             if c["cell_type"] == "code"]
    namespace = {"__name__": "__main__"}
    with no_new_compilation(path.name), contextlib.redirect_stdout(io.StringIO()):
        for index, cell in cells:
            tags = cell.get("metadata", {}).get("tags", [])   # nbmake's cell tags
            if "skip-execution" in tags:
                continue
            code = compile(transform("".join(cell["source"])), f"{path.name}[cell {index}]",
                           "exec")
            try:
                exec(code, namespace)  # the course's own notebook code
            except Exception:
                if "raises-exception" not in tags:
                    raise
