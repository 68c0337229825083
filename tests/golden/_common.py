"""Shared vocabulary of the golden event tables (see tests/test_golden_events.py).

A table entry is ``(workload, technique, strict) -> spec`` with

* ``counts``: the two loop counts (their runs must differ only by the extra iterations);
* ``per_iteration``: what one more iteration adds to each monitor event;
* ``excluded``: events left out of the "everything else grows by 0" check, each with the reason;
* ``same_ticks`` (optional): the two runs must see the same number of timer interrupts
  (the counts were chosen for that; if a kernel change moves the ticks, choose new counts).

Timer interrupts depend on run length, not on iterations.  The test therefore leaves out the
timer's own events (``TIMER_EVENTS``) and subtracts the timer interrupts from the event that
counts the IRET ending every handled timer interrupt (``trap_timer`` -> ``ret_user_iret`` or
``ret_kernel`` -> ``k_iret``: exactly one IRET each).
"""
NATIVE = "native"     # per_iteration value: grows exactly as the native machine's instructions

#: the timer's own events: one reflected interrupt per tick, a tick that found interrupts off,
#: the monitor's own time slice; under hw_shadow / hw_ept the host timer's exits (the monitor's
#: time slice and the guest's virtual deadline) and the interrupt-window exit of a tick that
#: found the guest's IF at 0.  (The guest's IRET runs in non-root mode: nothing to subtract.)
TIMER_EVENTS = ("reflect:timer_interrupt", "timer:pending", "monitor:preempt",
                "EXTERNAL_INTERRUPT", "INTERRUPT_WINDOW")

#: the event that counts the IRET of a handled timer interrupt, per technique
IRET_EVENT = {"trap_emulate": "emulate:iret", "binary_translation": "callout:emulate:iret",
              "paravirt": "hypercall:iret", "emulation:translate": "emulation:interpreted"}

#: the getpid-style system-call path in kernel.s (trap_syscall .. sys_return), per technique:
#: SYSCALL, irq_enable (STI), irq_save (PUSHF, CLI), irq_restore (POPF), irq_disable (CLI),
#: k_sysret (SYSRET)
SYSCALL_PATH = {"sti": 1, "pushf": 1, "cli": 2, "popf": 1, "sysret": 1}
#: one frame-allocator critical section (alloc_frame or free_frame): irq_save + irq_restore
ALLOCATOR = {"pushf": 1, "cli": 1, "popf": 1}

SOFT_TLB = ("the soft TLB's hits and misses count every memory access of the path (fetches, "
            "data, trap frames, the 1024-word page-zeroing and copying loops); these tables "
            "count instructions, not accesses")


def emulated(prefix, *parts, **extra):
    """Sum instruction counts (dicts mnemonic -> n) into ``prefix + mnemonic`` events."""
    out = {}
    for part in parts + (extra,):
        for name, n in part.items():
            out[prefix + name] = out.get(prefix + name, 0) + n
    return out


def times(table, k):
    return {name: k * n for name, n in table.items()}
