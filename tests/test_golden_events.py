"""Golden event tables: what ONE more loop iteration of a guest-OS workload costs each monitor.

Each workload runs at two loop counts; the difference of every monitor event, divided by the
difference of the counts, must equal the table below.  Every number is derived from the guest
kernel's code (kernel_sim/guests/kernel.s) and the technique's mechanism, as the comments say --
none was copied from a run.  Boot and shutdown cost the same at both counts, so they cancel.

The kernel paths the tables rely on (plain build):

* system-call path (``trap_syscall`` .. ``sys_return``): the ``syscall`` instruction traps;
  ``irq_enable`` = STI; ``irq_save`` = PUSHF + CLI around the accounting; ``irq_restore`` = POPF;
  dispatch (innocuous: callr); ``irq_disable`` = CLI; ``k_sysret`` = SYSRET.  That is 6
  privileged or sensitive instructions plus the trapping SYSCALL: 7 non-innocuous instructions.
* ``sys_getpid`` jumps to ``cur_pid``: innocuous only.
* ``sys_blkread`` -> block driver: ``irq_save`` (PUSHF, CLI), three OUTs (sector, buffer,
  command), one IN (status), ``irq_restore`` (POPF).
* ``sys_map``: allocates a zeroed frame (the frame allocator is an ``irq_save``/``irq_restore``
  critical section) and writes one PTE; ``sys_unmap``: clears the PTE, INVLPG, frees the frame
  (another critical section).
* #DE handler: skips the instruction and returns with IRET, no interrupt-flag changes.
* ``kcall(n)``: n CALL/RET pairs inside the kernel, nothing privileged.

The matrix (workload x technique) and where each table lives:

======================  ===========================================================================
emulation:interpret     GOLDEN here: syscall, io;  golden/events_emulation.py: the others
emulation:translate     GOLDEN here: syscall, io;  golden/events_emulation.py: the others
trap_emulate (strict)   GOLDEN here: syscall, io, divzero, ptemod, callret;
                        golden/events_trap_emulate.py: compute, pgfault, ctxswitch, forkwait, boot
binary_translation      test_binary_translation.py: syscall, callret;
                        golden/events_binary_translation.py: the others
paravirt                test_paravirt.py PER_ITERATION: syscall, io, ptemod, pgfault, ctxswitch,
                        divzero, compute;  golden/events_paravirt.py: callret, forkwait, boot
hw_shadow               golden/events_hw_shadow.py: all
hw_ept                  golden/events_hw_ept.py: all
======================  ===========================================================================

The tables under tests/golden/ also carry their two loop counts, the events they leave out of
the "everything else grows by 0" check (each with its reason), and tell the test how timer
interrupts are taken out (tests/golden/_common.py).

(``preempt`` is not in the matrix: its loop is timer preemption itself, so no event is a clean
per-iteration constant; test_guest_os.py checks its system calls natively.)
"""
import pytest
from golden import (
    events_binary_translation,
    events_emulation,
    events_hw_ept,
    events_hw_shadow,
    events_paravirt,
    events_trap_emulate,
)
from golden._common import IRET_EVENT, NATIVE, TIMER_EVENTS

from kernel_sim.guest import WORKLOADS, build_guest
from kernel_sim.monitors import DEFAULT_BUDGET, run_technique
from kernel_sim.monitors.paravirt import Paravirt

N1, N2 = 10, 14
SYSCALL_PATH_STRICT = {"reflect:syscall": 1, "emulate:sti": 1, "emulate:pushf": 1,
                       "emulate:cli": 2, "emulate:popf": 1, "emulate:sysret": 1}

GOLDEN = {
    # ---- trap-and-emulate on the strict ISA: every privileged or sensitive instruction of
    # the guest kernel traps (#GP in ring 1) and is emulated; every guest trap is reflected.
    ("syscall", "trap_emulate", True): dict(SYSCALL_PATH_STRICT),
    ("io", "trap_emulate", True): {
        "reflect:syscall": 1, "emulate:sti": 1, "emulate:sysret": 1,
        "emulate:pushf": 1 + 1,          # accounting + block driver critical section
        "emulate:cli": 2 + 1,            # the two of the syscall path + the driver's irq_save
        "emulate:popf": 1 + 1,
        "emulate:out": 3, "emulate:in": 1,   # sector, buffer, command; status
    },
    ("divzero", "trap_emulate", True): {
        "reflect:divide_error": 1,       # the #DE goes to the monitor, which reflects it
        "emulate:iret": 1,               # the handler's IRET back to the user program
    },
    ("ptemod", "trap_emulate", True): {
        # two system calls per iteration (map, unmap): the syscall path twice ...
        **{k: 2 * v for k, v in SYSCALL_PATH_STRICT.items()},
        # ... plus the frame allocator's critical section in each (allocate, free)
        "emulate:pushf": 2 + 2, "emulate:cli": 4 + 2, "emulate:popf": 2 + 2,
        "emulate:invlpg": 1,             # unmap drops the translation
        "shadow:pt_write": 2,            # map writes the PTE, unmap clears it: both are stores
                                         # to a write-protected guest page table, emulated
        "shadow:hidden_fault": 1,        # the user's first store to the freshly mapped page:
                                         # the shadow has no entry yet (the guest's PTE is fine)
    },
    ("callret", "trap_emulate", True): {},   # CALL/RET are innocuous: they run directly
    # ---- trap-and-emulate on the NON-strict ISA: PUSHF and POPF no longer trap (they run
    # directly in ring 1 and silently misbehave), everything else is as on the strict ISA.
    ("syscall", "trap_emulate", False): {"reflect:syscall": 1, "emulate:sti": 1,
                                         "emulate:cli": 2, "emulate:sysret": 1},
    # ---- pure emulation, Bochs style: every guest instruction is dispatched one by one; the
    # syscall iteration is 96 instructions (checked below against the native count).
    ("io", "emulation:interpret", None): {"emulation:device": 4},   # 3 OUT + 1 IN
    ("syscall", "emulation:interpret", None): {},                  # (no devices touched)
    # ---- QEMU style: the 7 non-innocuous instructions of the syscall path are interpreted
    # one by one, everything else runs from translation blocks, translated during the first
    # iteration: no new translation per iteration.
    ("syscall", "emulation:translate", None): {"emulation:interpreted": 7,
                                               "emulation:translations": 0},
    ("io", "emulation:translate", None): {"emulation:interpreted": 7 + 7,  # + the driver's
                                          "emulation:device": 4,          # pushf cli out*3
                                          "emulation:translations": 0},   # in popf
}


def run(workload, technique, strict, count):
    name, _, mode = technique.partition(":")
    if name == "paravirt":
        image = build_guest(workload, count=count, paravirt=True)
        monitor = Paravirt(image)
        result = monitor.run(DEFAULT_BUDGET)
        # page-table updates the PV kernel queued but had not handed over when it shut down
        result.pte_queued = int(monitor.view().memory[image.symbol("pte_qlen") // 4])
        return result
    if name == "native":
        return run_technique(build_guest(workload, count=count), name)
    settings = {"mode": mode} if mode else {} if strict is None else {"strict": strict}
    return run_technique(build_guest(workload, count=count), name, **settings)


def per_iteration(a, b, n1=N1, n2=N2):
    keys = set(a.monitor_events) | set(b.monitor_events)
    return {k: (b.monitor_events.get(k, 0) - a.monitor_events.get(k, 0)) / (n2 - n1)
            for k in keys}


@pytest.mark.parametrize("workload,technique,strict", sorted(GOLDEN, key=str),
                         ids=lambda v: str(v))
def test_one_more_iteration_costs_what_the_mechanism_predicts(workload, technique, strict):
    a, b = (run(workload, technique, strict, n) for n in (N1, N2))
    assert a.stop == b.stop == "halt"
    got = per_iteration(a, b)
    expected = GOLDEN[(workload, technique, strict)]
    if technique.startswith("trap_emulate"):
        # the table lists every event that grows: nothing else may (timer ticks aside, which
        # depend on run length, not on iterations)
        grown = {k: v for k, v in got.items() if v and not k.startswith(("timer", "monitor"))
                 and k != "reflect:timer_interrupt"}
        assert grown == {k: v for k, v in expected.items() if v}, workload
    else:
        for event, value in expected.items():
            assert got.get(event, 0) == value, event


def test_the_interpreter_dispatches_exactly_the_guest_instructions():
    a, b = (run("syscall", "emulation:interpret", None, n) for n in (N1, N2))
    grown = b.monitor_events["emulation:interpreted"] - a.monitor_events["emulation:interpreted"]
    assert grown == b.instructions - a.instructions
    na, nb = (run("syscall", "native", None, n) for n in (N1, N2))
    assert grown == nb.instructions - na.instructions


def test_translated_and_interpreted_instructions_add_up_to_the_guest_instructions():
    r = run("io", "emulation:translate", None, N1)
    assert (r.monitor_events["emulation:interpreted"] + r.monitor_events["emulation:tb_executed"]
            == r.instructions)


# ---- the rest of the matrix: tables in tests/golden/events_<technique>.py -------------------
TABLES = {**events_emulation.TABLES, **events_trap_emulate.TABLES,
          **events_binary_translation.TABLES, **events_paravirt.TABLES,
          **events_hw_shadow.TABLES, **events_hw_ept.TABLES}


def ticks(result):
    return result.traps.get("timer_interrupt", 0)


@pytest.mark.parametrize("workload,technique,strict", sorted(TABLES, key=str),
                         ids=lambda v: str(v))
def test_golden_table(workload, technique, strict):
    spec = TABLES[(workload, technique, strict)]
    n1, n2 = spec["counts"]
    a, b = (run(workload, technique, strict, n) for n in (n1, n2))
    assert a.stop == b.stop == "halt"
    assert len(a.console) == len(b.console), "choose counts whose printed numbers have " \
                                              "the same number of digits"
    if spec.get("same_ticks"):
        assert ticks(a) == ticks(b), "the counts no longer give the same timer ticks"
    got = per_iteration(a, b, n1, n2)
    # every handled timer interrupt ends with one IRET: take them out (see golden/_common.py)
    if technique in IRET_EVENT:
        got[IRET_EVENT[technique]] = got.get(IRET_EVENT[technique], 0) - \
            (ticks(b) - ticks(a)) / (n2 - n1)
    if technique == "paravirt":
        # PTE updates written = applied by mmu_update + still in the kernel's queue at the end
        got["paravirt:pte_updates"] = got.get("paravirt:pte_updates", 0) + \
            (b.pte_queued - a.pte_queued) / (n2 - n1)
    expected = dict(spec["per_iteration"])
    for event, value in expected.items():
        if value == NATIVE:
            na, nb = (run(workload, "native", None, n) for n in (n1, n2))
            expected[event] = (nb.instructions - na.instructions) / (n2 - n1)
    excluded = spec.get("excluded", {})
    assert all(isinstance(reason, str) and reason for reason in excluded.values())
    for event, value in expected.items():
        assert got.get(event, 0) == value, (event, got.get(event, 0), value)
    # everything else grows by 0
    grown = {k: v for k, v in got.items()
             if v and k not in excluded and k not in TIMER_EVENTS}
    assert grown == {k: v for k, v in expected.items() if v}
    if technique == "emulation:translate":
        # every guest instruction runs either from a block or through the interpreter
        na, nb = (run(workload, "native", None, n) for n in (n1, n2))
        assert (b.monitor_events.get("emulation:tb_executed", 0)
                + b.monitor_events.get("emulation:interpreted", 0)
                - a.monitor_events.get("emulation:tb_executed", 0)
                - a.monitor_events.get("emulation:interpreted", 0)) == \
            nb.instructions - na.instructions


def test_the_proc_table_shares_no_page_with_kernel_code():
    # the binary-translation tables count a store callout for `stat` (kernel data after the
    # code, on a code page) but none for the process-table updates next to it
    image = build_guest("syscall", count=1)
    code_pages = set(range(image.symbol("boot") >> 12, (image.symbol("text_end") >> 12) + 1))
    assert image.symbol("stat_syscalls") >> 12 in code_pages
    assert image.symbol("stat_divzero") >> 12 in code_pages
    assert image.symbol("proc_table") >> 12 not in code_pages


#: the combinations covered by tables in other test files (see the module docstring)
ELSEWHERE = {
    ("binary_translation", "syscall"):
        "test_binary_translation.py::test_golden_syscall_callouts_come_from_the_kernels_instructions",
    ("binary_translation", "callret"):
        "test_binary_translation.py::test_golden_callret_one_call_and_one_ret_callout_per_pair",
    **{("paravirt", w): "test_paravirt.py::PER_ITERATION"
       for w in ("syscall", "io", "ptemod", "pgfault", "ctxswitch", "divzero", "compute")},
}
MATRIX_TECHNIQUES = ("emulation:interpret", "emulation:translate", "trap_emulate",
                     "binary_translation", "paravirt", "hw_shadow", "hw_ept")
OUT_OF_MATRIX = {"preempt"}


def test_the_matrix_of_workloads_and_techniques_is_complete():
    here = {(t, w) for (w, t, strict) in list(GOLDEN) + list(TABLES)
            if not (t == "trap_emulate" and strict is False)}
    covered = here | set(ELSEWHERE)
    wanted = {(t, w) for t in MATRIX_TECHNIQUES for w in set(WORKLOADS) - OUT_OF_MATRIX}
    assert wanted - covered == set()
    assert not here & set(ELSEWHERE), "a combination is tabled twice"
    assert OUT_OF_MATRIX <= set(WORKLOADS)


def test_the_tables_elsewhere_still_exist():
    import test_paravirt
    assert {row[0] for row in test_paravirt.PER_ITERATION} == \
        {w for (t, w) in ELSEWHERE if t == "paravirt"}
    import test_binary_translation
    for (t, _), where in ELSEWHERE.items():
        if t == "binary_translation":
            assert hasattr(test_binary_translation, where.split("::")[1]), where
