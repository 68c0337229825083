"""The benchmark compares like with like: the C reference interpreter (benchmarks/cref.c) and the
jitted CPU must end every run in exactly the same state.

Correctness only -- no timing assertions (timing belongs to ``python benchmarks/run.py``).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_sim.asm import assemble
from kernel_sim.state import (
    C_STOP_ERROR,
    C_STOP_VECTOR,
    EV_INSTRUCTIONS,
    EV_TLB_HIT,
    EV_TLB_MISS,
    EV_WALK_REFS,
    STOP_BUDGET,
    STOP_HALT,
    STOP_UNHANDLED_TRAP,
)

REPO = Path(__file__).resolve().parent.parent
RUN_PY = REPO / "benchmarks" / "run.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("kernel_sim_bench_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

needs_cc = pytest.mark.skipif(bench.find_c_compiler() is None,
                              reason="no C compiler (cc/gcc/clang or $CC) to build "
                                     "benchmarks/cref.c")


@pytest.fixture(scope="module")
def cref(tmp_path_factory):
    return bench.CReference(tmp_path_factory.mktemp("cref"))


def run_both(cref, initial, budget):
    """Run C and numba from copies of ``initial``; return (c_stop, c_state, nb_stop, nb_state)."""
    c_state, nb_state = bench.copy_state(initial), bench.copy_state(initial)
    c_stop, _ = cref.run(c_state, budget)
    nb_stop, _ = bench.run_numba(nb_state, budget)
    return c_stop, c_state, nb_stop, nb_state


# Every opcode of the user-mode subset, with values that exercise signs, carries and shifts of
# 32 or more.  Loops forever (the budget stops it) and keeps changing its inputs, so each pass
# computes new values; every result is folded into a checksum (r13), so a wrong result in any
# pass shows in the final state.  Uses only the pages benchmarks/run.py maps (code, stack, data).
EVERY_USER_OPCODE = """
        .macro fold reg, off     ; store a result and fold it into the checksum r13
        st   \\reg, [r14 + \\off]
        add  r13, r13, \\reg
        shli r12, r13, 7
        shri r13, r13, 25
        or   r13, r13, r12
        .endm
        .org 0x1000
start:  li   sp, 0x3000
        li   r14, 0x10000        ; results go to the data page
        li   r1, 0x80000001
        li   r2, 0xfffffff0      ; -16
        movi r3, -7
again:  lui  r4, 0xdead
        ori  r4, r4, 0xbeef
        add  r4, r4, r1
        add  r5, r1, r2
        fold r5, 0
        sub  r5, r2, r1
        fold r5, 4
        and  r5, r4, r2
        fold r5, 8
        or   r5, r1, r3
        fold r5, 12
        xor  r5, r4, r1
        fold r5, 16
        movi r10, 35             ; shift amounts use the low five bits: 3
        shl  r5, r4, r10
        fold r5, 20
        shr  r5, r4, r10
        fold r5, 24
        sar  r5, r2, r10
        fold r5, 28
        mul  r5, r4, r4
        fold r5, 32
        andi r10, r4, 0xff
        ori  r10, r10, 1         ; a non-zero divisor
        div  r5, r1, r10
        fold r5, 36
        mod  r5, r4, r10
        fold r5, 40
        slt  r5, r2, r1
        sltu r6, r2, r1
        shli r6, r6, 1
        or   r5, r5, r6
        fold r5, 44
        addi r5, r1, -32768
        andi r6, r4, 0xf0f0
        xori r6, r6, 0xffff
        add  r5, r5, r6
        shli r6, r4, 31
        shri r7, r4, 17
        sari r8, r1, 9
        xor  r5, r5, r6
        xor  r5, r5, r7
        xor  r5, r5, r8
        fold r5, 48
        movi r5, 0               ; branches: one bit per fall-through
        blt  r2, r1, b1
        addi r5, r5, 1
b1:     bge  r2, r1, b2
        addi r5, r5, 2
b2:     bltu r1, r2, b3
        addi r5, r5, 4
b3:     bgeu r1, r2, b4
        addi r5, r5, 8
b4:     beq  r1, r3, b5
        addi r5, r5, 16
b5:     bne  r1, r3, b6
        addi r5, r5, 32
b6:     bgeu r1, r1, b7          ; equal operands: the >= / < edge
        addi r5, r5, 64
b7:     bge  r3, r3, b8
        addi r5, r5, 128
b8:     bltu r3, r3, b9
        addi r5, r5, 256
b9:     blt  r3, r3, b10
        addi r5, r5, 512
b10:    beq  r3, r3, b11
        addi r5, r5, 1024
b11:    fold r5, 52
        push r4
        push r1
        pop  r6
        pop  r7
        mov  r8, r6
        nop
        call twice
        la   r9, twice
        callr r9
        la   r9, after
        jr   r9
        movi r8, 0               ; skipped by jr
after:  fold r8, 56
        ld   r9, [r14 + 52]
        add  r1, r1, r9
        mul  r1, r1, r4          ; new inputs for the next pass
        addi r3, r3, 1
        xor  r2, r2, r5
        jmp  again
twice:  add  r8, r8, r8
        ret
"""


@needs_cc
@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paged"])
def test_c_reference_and_numba_leave_identical_state_after_the_benchmark_program(cref, paging):
    c_stop, c_state, nb_stop, nb_state = run_both(cref, bench.make_state(paging), 100_000)
    assert c_stop == nb_stop == STOP_BUDGET
    bench.compare_states(c_state, nb_state, "benchmark program")
    counters = nb_state["counters"]
    assert counters[EV_INSTRUCTIONS] == 100_000
    if paging:
        # the paged run must exercise both the inline TLB hit and the walk on a miss
        assert counters[EV_TLB_HIT] > 100_000
        assert counters[EV_TLB_MISS] > 20
        assert counters[EV_WALK_REFS] == 2 * counters[EV_TLB_MISS]


@needs_cc
@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paged"])
def test_c_reference_and_numba_agree_on_every_user_mode_opcode(cref, paging):
    program = assemble(EVERY_USER_OPCODE, filename="every_user_opcode.s")
    initial = bench.make_state(paging, program=program)
    c_stop, c_state, nb_stop, nb_state = run_both(cref, initial, 20_000)
    assert c_stop == nb_stop == STOP_BUDGET
    bench.compare_states(c_state, nb_state, "every user-mode opcode")
    assert nb_state["mem"][0x10000 // 4 + 14] != 0      # the program really ran to the end


@needs_cc
def test_c_reference_halts_like_numba_in_ring0(cref):
    program = assemble("start: movi r1, 5\n addi r1, r1, 1\n hlt\n", filename="halt.s")
    c_stop, c_state, nb_stop, nb_state = run_both(
        cref, bench.make_state(False, program=program, ring=0), 1000)
    assert c_stop == nb_stop == STOP_HALT
    bench.compare_states(c_state, nb_state, "halt")
    assert c_state["regs"][1] == 6


@needs_cc
def test_c_reference_stops_as_unsupported_where_the_kernel_would_deliver_a_divide_error(cref):
    program = assemble("start: movi r1, 5\n div r2, r1, r3\n", filename="de.s")
    c_stop, c_state, nb_stop, nb_state = run_both(
        cref, bench.make_state(False, program=program, ring=0), 1000)
    assert nb_stop == STOP_UNHANDLED_TRAP               # no vector table on the bare machine
    assert c_stop == bench.STOP_UNSUPPORTED
    assert c_state["ctrl"][C_STOP_VECTOR] == nb_state["ctrl"][C_STOP_VECTOR] == 0   # #DE


@needs_cc
def test_c_reference_stops_before_an_instruction_it_does_not_model(cref):
    program = assemble("start: movi r1, 5\n cli\n", filename="cli.s")
    c_stop, c_state, _, _ = run_both(cref, bench.make_state(False, program=program, ring=0), 10)
    assert c_stop == bench.STOP_UNSUPPORTED
    assert c_state["ctrl"][C_STOP_ERROR] == 0x56        # the opcode of CLI
    assert c_state["ctrl"][0] == 0x4                    # pc of the CLI: it did not retire


def test_compare_states_names_the_register_that_differs():
    a = bench.make_state(False)
    b = bench.copy_state(a)
    b["regs"][7] = 99
    with pytest.raises(bench.BenchmarkMismatch, match=r"regs: 1 differences, e\.g\. \[7\]"):
        bench.compare_states(a, b, "test")


@needs_cc
def test_run_py_quick_json_prints_the_required_keys():
    proc = subprocess.run([sys.executable, str(RUN_PY), "--json", "--quick", "--count",
                           "200000", "--repeats", "1", "--python-count", "5000"],
                          capture_output=True, text=True, timeout=600, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for key in ("numba_vs_c_flat", "numba_vs_c_paged", "numba_vs_python", "cold_compile_s",
                "warm_start_s", "peak_rss_mb", "widget_callback_ms"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["quick"] is True
    assert set(result["rates"]) == {f"{e}_{p}" for e in ("numba", "c", "python")
                                    for p in ("flat", "paged")}
    assert result["machine"]["cpu_count"] >= 1
