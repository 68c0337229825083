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

Paravirt (tests/test_paravirt.py) and binary translation (tests/test_binary_translation.py)
have their own per-iteration tables next to their mechanisms.
"""
import pytest

from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique

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
    settings = {"mode": mode} if mode else {"strict": strict}
    return run_technique(build_guest(workload, count=count), name, **settings)


def per_iteration(a, b):
    keys = set(a.monitor_events) | set(b.monitor_events)
    return {k: (b.monitor_events.get(k, 0) - a.monitor_events.get(k, 0)) / (N2 - N1)
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
