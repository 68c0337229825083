#!/usr/bin/env python
"""How fast is the jitted CPU?  Compare it with a C interpreter and with plain Python.

Usage::

    python benchmarks/run.py            # a readable table
    python benchmarks/run.py --json     # one JSON object (for CI and for tracking over time)
    python benchmarks/run.py --quick    # a smoke run with tiny counts (seconds, not minutes)

What it does, in one process run:

1. **Builds** ``benchmarks/cref.c`` -- a C reference interpreter of the user-mode subset of the
   ISA that does the same work per instruction as :func:`kernel_sim.cpu.execute` -- with the
   machine's C compiler (``$CC`` or ``cc``) at ``-O2`` into a temporary directory, and loads it
   with ctypes.
2. **Runs** the guest program ``benchmarks/guest_loop.s`` (ring 3, a checksum loop with loads,
   stores, branches and a call) on the jitted kernel and on the C reference, with paging off
   ("flat") and on ("paged": two-level page tables, 64-entry TLB), several times each.  Every
   run starts from the same state, and after every run the two engines must agree on *all*
   state -- registers, control state, counters, memory, TLB and trace -- or the benchmark stops
   with an error: comparing engines that did different work would be meaningless.  Timing is
   in-process around the call only (``run_native`` or the C function), never the build.
3. **Runs** the same program in pure Python (``NUMBA_DISABLE_JIT=1``) in a subprocess for fewer
   instructions, and checks its final state against a jitted run of the same length.
4. **Measures** the cold compile time (a fresh, empty Numba cache), the warm start time
   (interpreter start to first run finished, cache warm) and peak memory.

Reported numbers are medians over the repeats; the JSON also has every run.  Targets (medians):
``numba_vs_c_flat >= 0.8``, ``numba_vs_c_paged >= 0.5``, ``numba_vs_python >= 200``,
``cold_compile_s <= 60``.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:          # `python benchmarks/run.py` from a source checkout
    sys.path.insert(0, str(REPO))

from kernel_sim import isa  # noqa: E402
from kernel_sim.asm import assemble  # noqa: E402
from kernel_sim.machine import Machine  # noqa: E402
from kernel_sim.state import (  # noqa: E402
    C_PAGING,
    C_PTBR,
    EV_INSTRUCTIONS,
    EV_TLB_HIT,
    EV_TLB_MISS,
    EV_WALK_REFS,
    STOP_BUDGET,
    STOP_NAMES,
)

GUEST_SOURCE = HERE / "guest_loop.s"
CREF_SOURCE = HERE / "cref.c"
#: The header cref.c includes; written by :func:`constants_header` into the build directory.
CREF_HEADER = "kernel_sim_constants.h"

#: Page tables of the paged run live here (physical addresses, outside everything the guest maps).
PT_ROOT = 0x100000
PT_LEAF = 0x101000
#: The pages guest_loop.s touches: code, stack, the 16 data pages and the table page.
GUEST_PAGES = [0x1000, 0x2000] + [0x10000 + 0x1000 * k for k in range(16)] + [0x50000]

#: The C reference's own stop code: the jitted kernel would take a slow path it does not model.
STOP_UNSUPPORTED = 100

TARGETS = {"numba_vs_c_flat": (">=", 0.8), "numba_vs_c_paged": (">=", 0.5),
           "numba_vs_python": (">=", 200.0), "cold_compile_s": ("<=", 60.0),
           "technique_callback_ms": ("<=", 200.0), "boot_s_max": ("<=", 1.0),
           "lab_callback_ms": ("<=", 200.0)}

#: The state arrays, in the order run_native takes them (budget comes last).
STATE_ARRAYS = ("regs", "ctrl", "mem", "tlb", "costs", "counters", "console", "trace",
                "intercept")

RESULT_PREFIX = "BENCH_RESULT "
TINY_PROGRAM = "start: movi r1, 42\n       addi r1, r1, 1\n       hlt\n"


class BenchmarkMismatch(AssertionError):
    """Two engines ran the same program and ended in different states."""


# ---------------------------------------------------------------------------------------------
# The guest machine
# ---------------------------------------------------------------------------------------------
def guest_program():
    """Assemble ``guest_loop.s``."""
    return assemble(GUEST_SOURCE.read_text(), filename="guest_loop.s")


def make_state(paging: bool, program=None, ring: int = 3) -> dict:
    """The initial machine state of a benchmark run: a dict of fresh NumPy arrays.

    The default :class:`~kernel_sim.machine.Machine` (4 MiB, 2-level paging, 64-entry TLB) in
    ring 3 with the guest program (``guest_loop.s`` unless ``program`` is given) loaded.  With
    ``paging`` the pages in ``GUEST_PAGES`` are identity-mapped as user pages (present,
    writable, user) through a two-level table at ``PT_ROOT``.
    """
    m = Machine(ring=ring)
    m.load(program if program is not None else guest_program())
    if paging:
        flags = isa.PTE_P | isa.PTE_W | isa.PTE_U
        m.write_word(PT_ROOT, PT_LEAF | flags)            # directory entry 0 covers 0..4 MiB
        for page in GUEST_PAGES:
            m.write_word(PT_LEAF + 4 * (page >> 12), page | flags)
        m.write_cr("ptbr", PT_ROOT)
        m.write_cr("paging", 1)
        assert m.ctrl[C_PAGING] == 1 and m.ctrl[C_PTBR] == PT_ROOT
    return {"regs": m.regs, "ctrl": m.ctrl, "mem": m.mem, "tlb": m.tlb, "costs": m.costs,
            "counters": m.counters, "console": m.console_buffer, "trace": m.trace,
            "intercept": m.intercept}


def copy_state(state: dict) -> dict:
    return {k: v.copy() for k, v in state.items()}


def compare_states(a: dict, b: dict, what: str) -> None:
    """Raise :class:`BenchmarkMismatch` naming every array (and the first indices) that differ."""
    problems = []
    for name in STATE_ARRAYS:
        x, y = a[name], b[name]
        if x.shape != y.shape or not np.array_equal(x, y):
            if x.shape != y.shape:
                problems.append(f"{name}: shapes {x.shape} != {y.shape}")
                continue
            idx = np.argwhere(x != y)[:5]
            shown = ", ".join(f"[{','.join(map(str, i))}] {x[tuple(i)]} != {y[tuple(i)]}"
                              for i in idx)
            problems.append(f"{name}: {int(np.count_nonzero(x != y))} differences, e.g. {shown}")
    if problems:
        raise BenchmarkMismatch(f"{what}: the engines did different work:\n  "
                                + "\n  ".join(problems))


def state_summary(state: dict) -> dict:
    """JSON-able final state: small arrays in full, big ones as SHA-256 digests."""
    out = {k: state[k].tolist() for k in ("regs", "ctrl", "counters")}
    for k in ("mem", "tlb", "trace", "console"):
        out[k + "_sha256"] = hashlib.sha256(np.ascontiguousarray(state[k]).tobytes()).hexdigest()
    return out


def compare_summaries(a: dict, b: dict, what: str) -> None:
    problems = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), list) and isinstance(b.get(k), list):
                pairs = enumerate(zip(a[k], b[k], strict=False))
                diffs = [(i, x, y) for i, (x, y) in pairs if x != y][:5]
                problems.append(f"{k}: differ at (index, first, second) {diffs}")
            else:
                problems.append(f"{k}: {a.get(k)} != {b.get(k)}")
    if problems:
        raise BenchmarkMismatch(f"{what}: the engines did different work:\n  "
                                + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------
def run_numba(state: dict, budget: int):
    """Run the jitted kernel on ``state`` in place; return (stop reason, seconds)."""
    from kernel_sim.cpu import run_native
    args = [state[k] for k in STATE_ARRAYS]
    t0 = time.perf_counter()
    stop = run_native(*args, budget)
    return int(stop), time.perf_counter() - t0


def find_c_compiler():
    """The C compiler to use: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on PATH, else None."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def constants_header() -> str:
    """The C header ``cref.c`` includes: every integer constant of :mod:`kernel_sim.isa` and
    :mod:`kernel_sim.state`, and the MMU's own conventions (:mod:`kernel_sim.mmu`), as
    ``#define NAME (valueLL)``.

    Generated at build time from the modules themselves, so the C reference cannot disagree
    with the package about an opcode, a state index or a counter slot -- and nothing generated
    is committed, so there is nothing to keep in sync.
    """
    from kernel_sim import isa, mmu, state
    lines = ["/* Generated by benchmarks/run.py from kernel_sim/isa.py, kernel_sim/state.py and",
             " * kernel_sim/mmu.py.  Do not edit: edit those modules. */",
             "#ifndef KERNEL_SIM_CONSTANTS_H", "#define KERNEL_SIM_CONSTANTS_H"]
    mmu_own = ("ACC_WRITE", "ACC_FETCH", "BUS_ERROR")
    for module, names in ((isa, None), (state, None), (mmu, mmu_own)):
        lines.append(f"/* {module.__name__} */")
        for name, value in sorted(vars(module).items()):
            if (names is None and name.isupper() or name in (names or ())) and \
                    isinstance(value, int) and not isinstance(value, bool):
                lines.append(f"#define {name} ({value}LL)")
    lines.append("#endif")
    return "\n".join(lines) + "\n"


class CReference:
    """``cref.c`` compiled at ``-O2`` into a shared library and loaded with ctypes."""

    def __init__(self, build_dir, cc=None):
        self.cc = cc or find_c_compiler()
        if self.cc is None:
            raise RuntimeError("no C compiler found (set CC or install gcc)")
        self.path = Path(build_dir) / "cref.so"
        (Path(build_dir) / CREF_HEADER).write_text(constants_header(), encoding="utf-8")
        cmd = [self.cc, "-O2", "-shared", "-fPIC", "-I", str(build_dir), "-o", str(self.path),
               str(CREF_SOURCE)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        self.build_s = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"building the C reference failed: {' '.join(cmd)}\n"
                               f"{proc.stdout}{proc.stderr}")
        version = subprocess.run([self.cc, "--version"], capture_output=True, text=True)
        self.version = (version.stdout.splitlines() or ["?"])[0]
        self.lib = ctypes.CDLL(str(self.path))
        fn = self.lib.cref_run_native
        p = ctypes.c_void_p
        i64 = ctypes.c_int64
        fn.argtypes = [p, p, p, p, i64, p, p, p, i64, i64]
        fn.restype = i64
        self._fn = fn

    def run(self, state: dict, budget: int):
        """Run the C reference on ``state`` in place; return (stop reason, seconds)."""
        dtypes = {"regs": np.int64, "ctrl": np.int64, "mem": np.uint32, "tlb": np.int64,
                  "costs": np.int64, "counters": np.int64, "trace": np.int64}
        for name, dt in dtypes.items():
            arr = state[name]
            if arr.dtype != dt or not arr.flags.c_contiguous:
                raise TypeError(f"{name} must be a C-contiguous {np.dtype(dt).name} array")
        s = state
        args = (s["regs"].ctypes.data, s["ctrl"].ctypes.data, s["mem"].ctypes.data,
                s["tlb"].ctypes.data, s["tlb"].shape[0], s["costs"].ctypes.data,
                s["counters"].ctypes.data, s["trace"].ctypes.data, s["trace"].shape[0],
                int(budget))
        t0 = time.perf_counter()
        stop = self._fn(*args)
        return int(stop), time.perf_counter() - t0


def _check_stop(stop: int, engine: str, paging: bool) -> None:
    if stop != STOP_BUDGET:
        name = "unsupported (C reference)" if stop == STOP_UNSUPPORTED else STOP_NAMES.get(stop)
        raise BenchmarkMismatch(f"{engine} (paging {'on' if paging else 'off'}) stopped with "
                                f"{name!r} instead of running out of budget: the benchmark "
                                f"program went wrong")


# ---------------------------------------------------------------------------------------------
# Subprocess measurements
# ---------------------------------------------------------------------------------------------
def _child_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run_child(args, env, what: str, timeout: float = 1800) -> dict:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(REPO),
                          timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            if proc.returncode != 0:
                break
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"{what} failed (exit code {proc.returncode}):\n"
                       f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def python_worker(paging: bool, count: int, repeats: int) -> None:
    """Body of ``--python-worker``: time the kernel as plain Python (NUMBA_DISABLE_JIT=1)."""
    from numba.core import config
    if not config.DISABLE_JIT:
        raise SystemExit("--python-worker must run with NUMBA_DISABLE_JIT=1")
    times, summary = [], None
    for _ in range(repeats):
        state = make_state(paging)
        stop, seconds = run_numba(state, count)       # run_native, not jitted here
        _check_stop(stop, "pure Python", paging)
        times.append(seconds)
        summary = state_summary(state)
    print(RESULT_PREFIX + json.dumps({"times": times, "state": summary}))


def measure_python(paging: bool, count: int, repeats: int) -> dict:
    """Pure-Python rate in a subprocess; its final state must equal a jitted run's."""
    result = _run_child([sys.executable, str(Path(__file__).resolve()), "--python-worker",
                         "--paging", "1" if paging else "0", "--python-count", str(count),
                         "--repeats", str(repeats)],
                        _child_env(NUMBA_DISABLE_JIT=1), "the pure-Python run")
    state = make_state(paging)
    stop, _ = run_numba(state, count)
    _check_stop(stop, "numba", paging)
    compare_summaries(result["state"], state_summary(state),
                      f"pure Python vs numba, {count} instructions, paging "
                      f"{'on' if paging else 'off'}")
    return {"runs": [count / t for t in result["times"]],
            "median": statistics.median(count / t for t in result["times"])}


_COLD_SCRIPT = r"""
import contextlib, io, json, os, sys, time
t0 = time.perf_counter()
import kernel_sim
method = "Machine.run (no warmup command)"
try:
    from kernel_sim.__main__ import main as cli_main
except Exception:
    cli_main = None
if cli_main is not None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            rc = cli_main(["warmup"])
        except SystemExit as exc:
            rc = exc.code
    if rc in (0, None):
        method = "python -m kernel_sim warmup"
from kernel_sim import Machine, assemble
m = Machine()
m.load(assemble(TINY))
res = m.run(count=1000)
t1 = time.perf_counter()
print(PREFIX + json.dumps({"seconds": t1 - t0, "method": method, "stop": res.stop}))
"""

_WARM_SCRIPT = r"""
import json, os, sys, time
from kernel_sim import Machine, assemble
m = Machine()
m.load(assemble(TINY))
res = m.run(count=1000)
t_end = time.time()
print(PREFIX + json.dumps({"seconds": t_end - float(os.environ["BENCH_T_SPAWN"]),
                           "peak_rss_mb": PEAK_RSS(), "stop": res.stop}))
"""


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    On Linux this is ``VmHWM`` from /proc/self/status: ``ru_maxrss`` survives ``exec`` there, so
    a child started by a big process would report its parent's peak.
    """
    import resource
    import sys
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024   # bytes on macOS


def _script(template: str) -> str:
    import inspect
    source = inspect.getsource(peak_rss_mb)
    return (source + template.replace("PEAK_RSS", "peak_rss_mb")
            .replace("TINY", repr(TINY_PROGRAM)).replace("PREFIX", repr(RESULT_PREFIX)))


def jitted_modules() -> list:
    """kernel_sim modules that define jitted functions (a plain text search for ``@njit``)."""
    pkg = REPO / "kernel_sim"
    return sorted(str(p.relative_to(REPO)) for p in pkg.rglob("*.py")
                  if "@njit" in p.read_text(encoding="utf-8", errors="replace"))


def measure_compile_and_start(warm_repeats: int) -> dict:
    """Cold compile with an empty Numba cache, then warm starts that reuse it."""
    with tempfile.TemporaryDirectory(prefix="kernel_sim-bench-cache-") as cache:
        cold = _run_child([sys.executable, "-c", _script(_COLD_SCRIPT)],
                          _child_env(NUMBA_CACHE_DIR=cache), "the cold-compile run")
        warm_times, rss = [], []
        for _ in range(warm_repeats):
            env = _child_env(NUMBA_CACHE_DIR=cache, BENCH_T_SPAWN=repr(time.time()))
            warm = _run_child([sys.executable, "-c", _script(_WARM_SCRIPT)], env,
                              "the warm-start run")
            warm_times.append(warm["seconds"])
            rss.append(warm["peak_rss_mb"])
    return {"cold_compile_s": cold["seconds"], "cold_compile_method": cold["method"],
            "warm_start_s": statistics.median(warm_times), "warm_start_runs": warm_times,
            "peak_rss_tiny_mb": max(rss)}


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------
def measure_widget_latency(repeats: int = 20) -> dict:
    """Time the ring explorer's kernel-side callback (rerun the probe, refill the figure).

    This is the part of a widget interaction the course controls; the browser's redraw comes on
    top.  Budget: well under 100 ms once warm.
    """
    from kernel_sim.widgets.rings import ring_explorer
    explorer = ring_explorer()
    explorer.ring.value = 0                              # warm every path once
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        explorer.ring.value = k % 4
        times.append(time.perf_counter() - t0)
    return {"widget_callback_ms": 1000 * statistics.median(times),
            "widget_callback_ms_runs": [1000 * t for t in times]}


def measure_techniques(repeats: int = 5) -> dict:
    """Wall time of the guest OS's ``boot`` workload under every technique, and of the technique
    explorer's kernel-side callback on a default-size workload (cache cleared, so every update
    really runs the guest natively and under the technique).  Budgets: boot under 1 s, the
    callback under 200 ms (medians, once warm)."""
    from kernel_sim.guest import build_guest
    from kernel_sim.monitors import available_techniques, run_technique
    from kernel_sim.experiments import clear_cache
    from kernel_sim.widgets.techniques import technique_explorer
    out: dict = {"boot_s": {}, "boot_s_runs": {}}
    for name in available_techniques():
        times = []
        for rep in range(repeats + 1):             # the first run warms (compiles) the path
            image = build_guest("boot", paravirt=(name == "paravirt"))
            t0 = time.perf_counter()
            result = run_technique(image, name, strict=True)
            dt = time.perf_counter() - t0
            if result.stop != "halt":
                raise SystemExit(f"boot under {name} stopped with {result.stop_description}")
            if rep:
                times.append(dt)
        out["boot_s"][name] = statistics.median(times)
        out["boot_s_runs"][name] = times
    explorer = technique_explorer()
    settings = [(t, w) for t in explorer.technique.options for w in ("syscall", "compute")]
    for t, w in settings:                            # warm every path once
        explorer.set(technique=t, workload=w)
    times = []
    for k in range(repeats * 4):
        t, w = settings[k % len(settings)]
        clear_cache()
        t0 = time.perf_counter()
        explorer.set(technique=t, workload=w)
        times.append(time.perf_counter() - t0)
    out["technique_callback_ms"] = 1000 * statistics.median(times)
    out["technique_callback_ms_runs"] = [1000 * t for t in times]
    out["boot_s_max"] = max(out["boot_s"].values())
    return out


def measure_lab(repeats: int = 3) -> dict:
    """Wall time of the Virtualization Lab's kernel-side callback (notebook 07): typical changes
    from its default setting -- the left technique through every technique, the right side's
    TLB size and VPID, the workload.  Every path is warmed once; then each change is timed with
    the result cache cleared (so native, left and right all really run) and again cached.
    Budget: the uncached median under 200 ms."""
    from kernel_sim.experiments import clear_cache
    from kernel_sim.widgets.hardware import TECHNIQUES, virtualization_lab
    lab = virtualization_lab()
    changes = ([(lab.left.technique, t) for t in TECHNIQUES if t != "hw_shadow"]
               + [(lab.left.technique, "hw_shadow"), (lab.right.tlb_size, 16),
                  (lab.right.tlb_size, 64), (lab.right.vpid, False), (lab.right.vpid, True),
                  (lab.workload, "syscall"), (lab.workload, "forkwait")])
    for control, value in changes:                 # warm every path once
        control.value = value
    out: dict = {}
    for label, clear in (("lab_callback_ms", True), ("lab_callback_cached_ms", False)):
        times = []
        for _ in range(repeats):
            for control, value in changes:
                if clear:
                    clear_cache()
                t0 = time.perf_counter()
                control.value = value
                times.append(time.perf_counter() - t0)
                if lab.message.value:
                    raise SystemExit(f"the Lab refused a benchmark setting: {lab.message.value}")
        out[label] = 1000 * statistics.median(times)
        out[label + "_runs"] = [1000 * t for t in times]
    return out


def machine_info(cref) -> dict:
    import numba
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numba": numba.__version__,
            "numpy": np.__version__, "cc": cref.cc, "cc_version": cref.version,
            "cc_flags": "-O2 -shared -fPIC"}


def run_benchmark(count: int, repeats: int, python_count: int, python_repeats: int,
                  warm_repeats: int, progress=None) -> dict:
    say = progress or (lambda msg: None)
    results: dict = {"instructions_per_run": count, "repeats": repeats,
                     "python_instructions_per_run": python_count}
    with tempfile.TemporaryDirectory(prefix="kernel_sim-cref-") as build_dir:
        cref = CReference(build_dir)
        results["cref_build_s"] = cref.build_s
        results["machine"] = machine_info(cref)

        say("compiling or loading the jitted kernel ...")
        run_numba(make_state(True), 1000)                 # compile (or load) outside the timing
        rates = {f"{e}_{p}": [] for e in ("numba", "c") for p in ("flat", "paged")}
        events = {}
        for rep in range(repeats):
            for paging in (False, True):
                label = "paged" if paging else "flat"
                say(f"run {rep + 1}/{repeats}, paging {'on' if paging else 'off'}: "
                    f"C and numba, {count:,} instructions each ...")
                initial = make_state(paging)
                c_state, nb_state = copy_state(initial), copy_state(initial)
                # alternate which engine goes first so neither always gets a warmer machine
                order = ("c", "numba") if rep % 2 == 0 else ("numba", "c")
                for engine in order:
                    if engine == "c":
                        stop, seconds = cref.run(c_state, count)
                    else:
                        stop, seconds = run_numba(nb_state, count)
                    _check_stop(stop, engine, paging)
                    rates[f"{engine}_{label}"].append(count / seconds)
                compare_states(c_state, nb_state,
                               f"C vs numba, {count} instructions, paging "
                               f"{'on' if paging else 'off'}")
                ctr = nb_state["counters"]
                assert ctr[EV_INSTRUCTIONS] == count
                events[label] = {"tlb_hits": int(ctr[EV_TLB_HIT]),
                                 "tlb_misses": int(ctr[EV_TLB_MISS]),
                                 "walk_refs": int(ctr[EV_WALK_REFS])}

    for paging in (False, True):
        label = "paged" if paging else "flat"
        say(f"pure Python (NUMBA_DISABLE_JIT=1), paging {'on' if paging else 'off'}, "
            f"{python_count:,} instructions ...")
        py = measure_python(paging, python_count, python_repeats)
        rates[f"python_{label}"] = py["runs"]

    say("cold compile (empty Numba cache) and warm starts ...")
    results.update(measure_compile_and_start(warm_repeats))

    med = {k: statistics.median(v) for k, v in rates.items()}
    results["rates"] = {k: {"median": med[k], "runs": v} for k, v in rates.items()}
    results["events"] = events
    results["numba_vs_c_flat"] = med["numba_flat"] / med["c_flat"]
    results["numba_vs_c_paged"] = med["numba_paged"] / med["c_paged"]
    results["numba_vs_python"] = med["numba_flat"] / med["python_flat"]
    results["numba_vs_python_paged"] = med["numba_paged"] / med["python_paged"]
    # per-run ratios (run i of numba over run i of C) show how noisy the medians are
    for label in ("flat", "paged"):
        results[f"numba_vs_c_{label}_runs"] = [
            n / c for n, c in zip(rates[f"numba_{label}"], rates[f"c_{label}"], strict=True)]
    say("widget latency: ring explorer callback ...")
    results.update(measure_widget_latency())
    say("guest OS under every technique: boot and technique-explorer callback ...")
    results.update(measure_techniques())
    say("Virtualization Lab callback (notebook 07) ...")
    results.update(measure_lab())
    results["jitted_modules"] = jitted_modules()
    results["peak_rss_mb"] = peak_rss_mb()
    results["targets"] = {}
    for key, (op, limit) in TARGETS.items():
        value = results[key]
        met = value >= limit if op == ">=" else value <= limit
        results["targets"][key] = {"target": f"{op} {limit:g}", "value": value, "met": met}
    return results


def _rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:9.1f} M/s"
    return f"{r / 1e3:9.1f} k/s"


def format_table(r: dict) -> str:
    rates = r["rates"]
    m = r["machine"]
    lines = [f"kernel_sim benchmark -- guest_loop.s in ring 3; medians of {r['repeats']} runs",
             f"  {m['cpu']} ({m['cpu_count']} CPUs), Python {m['python']}, numba {m['numba']}, "
             f"{m['cc_version']} -O2",
             f"  C and numba: {r['instructions_per_run']:,} instructions per run; "
             f"pure Python: {r['python_instructions_per_run']:,}",
             "",
             f"  {'engine':<22}{'paging':<8}{'guest instr/s':>15}{'numba is':>12}"]
    for label, paging in (("flat", "off"), ("paged", "on")):
        nb = rates[f"numba_{label}"]["median"]
        for engine, key in (("numba (jitted)", "numba"), ("C reference, -O2", "c"),
                            ("pure Python", "python")):
            rate = rates[f"{key}_{label}"]["median"]
            ratio = "" if key == "numba" else f"{nb / rate:10.2f}x"
            lines.append(f"  {engine:<22}{paging:<8}{_rate(rate):>15}{ratio:>12}")
        if label == "paged":
            ev = r["events"]["paged"]
            total = ev["tlb_hits"] + ev["tlb_misses"]
            lines.append(f"  (paged run: {ev['tlb_hits']:,} TLB hits, {ev['tlb_misses']:,} misses"
                         f" = {100 * ev['tlb_misses'] / max(total, 1):.3f} %, "
                         f"{ev['walk_refs']:,} walk references)")
    lines += ["",
              f"  cold compile (empty cache): {r['cold_compile_s']:6.2f} s   "
              f"[{r['cold_compile_method']}]",
              f"  warm start to first run:    {r['warm_start_s']:6.2f} s",
              f"  widget callback (ring explorer, median): {r['widget_callback_ms']:.1f} ms",
              f"  technique explorer callback (median, uncached): "
              f"{r['technique_callback_ms']:.0f} ms",
              f"  Virtualization Lab callback (median): uncached {r['lab_callback_ms']:.0f} ms, "
              f"cached {r['lab_callback_cached_ms']:.1f} ms",
              "  boot workload, median wall time: " + ", ".join(
                  f"{k} {v:.2f} s" for k, v in r["boot_s"].items()),
              f"  peak RSS: benchmark process {r['peak_rss_mb']:.0f} MB, "
              f"import + tiny program {r['peak_rss_tiny_mb']:.0f} MB",
              f"  jitted modules: {', '.join(r['jitted_modules'])}",
              "", "  targets (medians):"]
    for key, t in r["targets"].items():
        lines.append(f"    {key:<18} {t['value']:10.2f}   target {t['target']:<8} "
                     f"{'ok' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true",
                    help="smoke mode: tiny counts and fewer repeats (numbers are not meaningful)")
    ap.add_argument("--count", type=int, help="guest instructions per timed C/numba run "
                    "(default 100,000,000)")
    ap.add_argument("--repeats", type=int, help="timed runs per engine and paging mode "
                    "(default 5)")
    ap.add_argument("--python-count", type=int, help="instructions per pure-Python run "
                    "(default 200,000)")
    ap.add_argument("--python-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--paging", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.python_worker:
        python_worker(bool(args.paging), args.python_count or 200_000, args.repeats or 1)
        return 0
    if args.quick:
        count, repeats, py_count, py_repeats, warm_repeats = 1_000_000, 2, 20_000, 1, 1
    else:
        count, repeats, py_count, py_repeats, warm_repeats = 100_000_000, 5, 200_000, 3, 3
    for name in ("count", "repeats", "python_count"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    count = args.count or count
    repeats = args.repeats or repeats
    py_count = args.python_count or py_count
    progress = None if args.json else (lambda msg: print("...", msg, file=sys.stderr,
                                                         flush=True))
    try:
        results = run_benchmark(count, repeats, py_count, py_repeats, warm_repeats, progress)
    except BenchmarkMismatch as exc:
        print(f"BENCHMARK INVALID: {exc}", file=sys.stderr)
        return 1
    results["quick"] = bool(args.quick)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
