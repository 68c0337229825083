"""Golden per-iteration VM exits of hw_ept (VT-x with nested paging).

The guest kernel runs unmodified in ring 0 of VMX non-root operation, and with EPT the CPU walks
the guest's own page tables: page faults, PTBR loads and INVLPG stay inside the guest (their
controls are optional and off by default).  What still exits (hardware_assist.py):

* ``IO_INSTRUCTION``: every IN and OUT (io_exiting, required);
* ``HLT``: every HLT (required) -- the kernel halts only in the idle loop and at shutdown;
* ``EPT_VIOLATION``: the first touch of a guest-physical page (the monitor maps it in the nested
  table and never unmaps it).  The kernel's free list is LIFO: a frame freed in one iteration is
  the one allocated in the next, so no loop iteration touches a new guest-physical page;
* ``EXTERNAL_INTERRUPT`` and ``INTERRUPT_WINDOW`` are the timer's (see _common.TIMER_EVENTS).

So a loop iteration costs one exit per IN/OUT -- and nothing for system calls, page faults,
address-space switches, fork and exit, which trap_emulate and hw_shadow pay for.
"""
E = ("hw_ept", None)

TABLES = {
    # user arithmetic only.  (24, 29): the exit status printed at shutdown (r2 >> 24) has the
    # same number of digits -- each printed character is one OUT
    ("compute",) + E: {"counts": (24, 29), "per_iteration": {}},
    # one more compute step in the shell's child (counts: see events_trap_emulate)
    ("boot",) + E: {"counts": (24, 29), "per_iteration": {}, "same_ticks": True},
    # the system-call path (SYSCALL, STI, PUSHF/CLI/POPF, CLI, SYSRET) runs in the guest
    ("syscall",) + E: {"counts": (10, 14), "per_iteration": {}},
    ("callret",) + E: {"counts": (10, 14), "per_iteration": {}},
    # #DE is not in the exception bitmap: delivered and handled (IRET) inside the guest
    ("divzero",) + E: {"counts": (10, 14), "per_iteration": {}},
    # blk_io: OUT sector, OUT buffer, OUT command, IN status.  The DMA target blk_buf was
    # touched (and mapped in the EPT) by the first read
    ("io",) + E: {"counts": (10, 14), "per_iteration": {"IO_INSTRUCTION": 3 + 1}},
    # the demand fault, the PTE writes, the retried accesses and unmap's INVLPG all run in the
    # guest; the zeroed frame is the one unmap freed in the previous iteration (LIFO): mapped
    ("pgfault",) + E: {"counts": (10, 14), "per_iteration": {}},
    # map, store, unmap, INVLPG: in the guest; same frame every iteration (LIFO)
    ("ptemod",) + E: {"counts": (10, 14), "per_iteration": {}},
    # two yields, two WRCR ptbr: CR3-load exiting is off
    ("ctxswitch",) + E: {"counts": (10, 14), "per_iteration": {}},
    # fork allocates D, T and the two page copies; exit frees them in the order the next fork
    # takes them back (events_trap_emulate explains the LIFO order): four frames, all mapped
    # in the EPT since the first iteration.  The three WRCR ptbr do not exit
    ("forkwait",) + E: {"counts": (10, 14), "per_iteration": {}},
}
