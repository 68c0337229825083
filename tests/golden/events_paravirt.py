"""Golden per-iteration events of paravirt for the workloads that tests/test_paravirt.py's
PER_ITERATION does not cover (it has syscall, io, ptemod, pgfault, ctxswitch, divzero, compute).

The PARAVIRT=1 kernel runs in ring 1 and calls the monitor with ``vmcall`` (``hypercall:*``);
traps from user mode are reflected (``reflect:*``); interrupt masking is a store to the shared
info page, no monitor involved.
"""
P = ("paravirt", None)

BATCHING = ("the PTE queue is flushed before switching address space, before INVLPG, and on "
            "every return from a trap -- timer interrupts included -- so where the batches "
            "break depends on where the ticks fall (test_paravirt covers forkwait's batching)")


TABLES = {
    # kcall(n): CALL/RET run directly in ring 1; the loop involves no monitor at all
    ("callret",) + P: {"counts": (10, 14), "per_iteration": {}},
    # one more compute step in user mode (counts: see events_trap_emulate)
    ("boot",) + P: {"counts": (24, 29), "per_iteration": {}, "same_ticks": True},
    ("forkwait",) + P: {"counts": (10, 14), "per_iteration": {
        # fork, wait, exit: three reflected system calls, three sysret hypercalls (fork's to
        # the parent, wait's into the child, exit's into the parent)
        "reflect:syscall": 3, "hypercall:sysret": 3,
        # switch_mm 3x: to the child, to kernel_pd in do_exit, back to the parent
        "hypercall:new_baseptr": 3,
        # alloc_pt flushes the TLB entry of the frame it made read-only: the child's
        # directory and its first page table
        "hypercall:invlpg": 2,
        # the child's directory and table are validated when it is first loaded, and released
        # (made writable again) by free_pt when it exits
        "paravirt:validate_table": 2, "paravirt:release_table": 2,
        # no trap other than the timer returns with IRET
        "hypercall:iret": 0,
        # PTEs written through set_pte/set_pde: fork: the child's directory made read-only in
        # the identity map (alloc_pt) and its entry 0 (new_address_space); its page table
        # made read-only and hooked into the directory (map_page -> alloc_pt); one PTE per
        # copied page (image, stack) = 6; exit (free_address_space): the directory entry
        # cleared, the table made writable again (free_pt), entry 0 cleared, the directory
        # made writable again = 4.  (The shutdown path leaves its last updates in the queue;
        # the test counts those too: applied + still queued.)
        "paravirt:pte_updates": 6 + 4,
    }, "excluded": {"hypercall:mmu_update": BATCHING}},
}
