"""Exercises of notebook 06: each checker accepts the master's solution and rejects wrong answers.

The master's solutions are read from ``course/masters/06_paravirtualization.ipynb`` (the lines
between ``### BEGIN SOLUTION`` and ``### END SOLUTION``), so a solution that drifts from the
simulator fails here as well as when the master runs.  The expected values are also derived here
independently of the checkers' own code: by running the guest, and by reading ``kernel.s`` and the
``kernel/*.s`` files it includes with a few lines of plain text processing.
"""
import re

import pytest
from masters import master_path
from masters import master_solutions as shared_master_solutions

from kernel_sim.exercises import verdict
from kernel_sim.guest import GUEST_DIR, HYPERCALLS, build_guest
from kernel_sim.monitors import run_technique

MASTER = master_path("06")


def _kernel_lines() -> list:
    """The lines of kernel.s and of the kernel/*.s files it includes, file after file."""
    top = (GUEST_DIR / "kernel.s").read_text(encoding="utf-8").split("\n")
    parts = re.findall(r'^\.include\s+"(kernel/[^"]+)"', "\n".join(top), re.M)
    assert len(parts) > 5
    return top + [line for part in parts
                  for line in (GUEST_DIR / part).read_text(encoding="utf-8").split("\n")]


KERNEL = _kernel_lines()
IDS = ["06.1", "06.2", "06.3", "06.4"]


def master_solutions() -> dict:
    """{exercise id: the answer the master's solution assigns}."""
    return shared_master_solutions("06")


SOLUTIONS = master_solutions()


@pytest.mark.parametrize("ex_id, wrong", [
    ("06.1", 0), ("06.1", 3), ("06.1", "1"), ("06.1", True), ("06.1", 1.0),
    ("06.2", "enable_paging"), ("06.2", "set_trap_table"), ("06.2", "wrcr"), ("06.2", 4),
    ("06.3", 68), ("06.3", 303), ("06.3", "52"), ("06.3", 52.0),
    ("06.4", 196), ("06.4", 30), ("06.4", 2995), ("06.4", "226"),
])
def test_checker_rejects_wrong_answers(ex_id, wrong):
    assert not verdict(ex_id, wrong).ok


def test_06_1_the_pv_kernel_is_in_ring_1_while_it_boots():
    image = build_guest("boot", paravirt=True)
    rings = set()
    for budget in (200, 1000, 3000):                   # three moments of the boot
        r = run_technique(image, "paravirt", count=budget)
        assert r.stop == "budget" and image.entry <= r.pc < image.symbol("text_end")
        rings.add(r.cpl)
    assert rings == {SOLUTIONS["06.1"]} == {1}


def _blocks():
    """(paravirt lines, native lines) of each `.if PARAVIRT` block, comments dropped."""
    out, current = [], None
    for line in KERNEL:
        code = line.split(";")[0].strip()
        if code == ".if PARAVIRT":
            current = ([], [])
            side = 0
        elif current is not None and code == ".else":
            side = 1
        elif current is not None and code == ".endif":
            out.append(current)
            current = None
        elif current is not None and code:
            current[side].append(code)
    return out


def test_06_2_read_from_the_source():
    found = set()
    for pv, native in _blocks():
        if any(re.match(r"wrcr\s+ptbr\b", n) for n in native):
            found |= {m.lower() for p in pv for m in re.findall(r"HC_(\w+)", p)}
    assert "new_baseptr" in found and SOLUTIONS["06.2"] == "new_baseptr"
    assert HYPERCALLS["new_baseptr"] == 4


def test_06_3_counted_by_a_direct_run():
    r = run_technique(build_guest("boot", paravirt=True, batch=16), "paravirt")
    assert r.stop == "halt"
    assert r.monitor_events["hypercall:mmu_update"] == SOLUTIONS["06.3"]
    # 16 updates per hypercall at most: at least ceil(updates / 16) hypercalls
    assert SOLUTIONS["06.3"] >= -(-r.monitor_events["paravirt:pte_updates"] // 16)


def test_06_4_counted_line_by_line():
    # kernel.s has no .if inside a PARAVIRT block (checked here), so the blocks do not overlap
    inside = 0
    depth = 0
    for line in KERNEL:
        code = line.split(";")[0].strip()
        if code.startswith(".if"):
            depth += 1
            assert depth == 1
        elif code == ".endif":
            depth -= 1
        elif depth and code and code != ".else":
            inside += 1
    assert inside == sum(len(pv) + len(native) for pv, native in _blocks())
    assert inside == SOLUTIONS["06.4"]
