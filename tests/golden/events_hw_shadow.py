"""Golden per-iteration VM exits of hw_shadow (first-generation VT-x: no EPT, shadow paging).

The guest kernel runs unmodified in ring 0 of VMX non-root operation: CLI, STI, PUSHF, POPF,
IRET, SYSRET, system calls and the guest's own #DE run on the CPU and never exit.  What exits
is fixed by the controls hw_shadow requires (kernel_sim/monitors/hardware_assist.py):

* ``IO_INSTRUCTION``: every IN and OUT (io_exiting);
* ``HLT``: every HLT (hlt_exiting) -- the kernel halts only in the idle loop and at shutdown;
* ``CR_ACCESS``: every WRCR/RDCR of the PTBR (CR3-load/-store exiting) and every WRCR of the
  paging register (the CR0 guest/host mask).  The kernel reads the PTBR nowhere and writes the
  paging register once, at boot; it writes the PTBR only in ``switch_mm``;
* ``INVLPG``: every INVLPG (the kernel's only one is in ``flush_page``, called by unmap);
* ``EXCEPTION_NMI:page_fault``: every page fault in non-root mode (#PF is in the exception
  bitmap): the monitor's shadow pager (the code trap_emulate uses) sorts it into a *hidden*
  fault (only the shadow lacked the entry), a *pt_write* (a store to a write-protected guest
  page table, emulated) or a *true* fault (the guest's own #PF, injected).  One exit each.
* ``EXTERNAL_INTERRUPT`` and ``INTERRUPT_WINDOW`` are the timer's (see _common.TIMER_EVENTS).

So a loop iteration costs one exit per IN/OUT, per PTBR write, per INVLPG and per shadow page
fault, and nothing else.  The shadow-fault counts are the same as trap_emulate's
(golden/events_trap_emulate.py and test_golden_events.GOLDEN), which the comments below repeat:
the same pager sees the same guest accesses.
"""
H = ("hw_shadow", None)
PF = "EXCEPTION_NMI:page_fault"

TABLES = {
    # user arithmetic only: nothing exits.  (24, 29): the exit status printed at shutdown
    # (r2 >> 24) then has the same number of digits -- each printed character is one OUT.
    ("compute",) + H: {"counts": (24, 29), "per_iteration": {}},
    # one more compute step in the shell's child: user code, nothing exits (counts: see
    # events_trap_emulate)
    ("boot",) + H: {"counts": (24, 29), "per_iteration": {}, "same_ticks": True},
    # getpid: SYSCALL, STI, PUSHF/CLI/POPF, CLI, SYSRET all run in non-root ring 0; the path
    # touches no page table, no PTBR, no device
    ("syscall",) + H: {"counts": (10, 14), "per_iteration": {}},
    # kcall(n): CALL/RET in the kernel; the one system call is outside the loop
    ("callret",) + H: {"counts": (10, 14), "per_iteration": {}},
    # the #DE is not in the exception bitmap: the CPU delivers it to the guest's trap_de, whose
    # IRET runs in the guest too
    ("divzero",) + H: {"counts": (10, 14), "per_iteration": {}},
    # blkread -> blk_io: three OUTs (sector, buffer, command) and one IN (status); the DMA into
    # blk_buf (a kernel data page, not a page table) needs no shadow work
    ("io",) + H: {"counts": (10, 14), "per_iteration": {"IO_INSTRUCTION": 3 + 1}},
    ("pgfault",) + H: {"counts": (10, 14), "per_iteration": {
        # the user load from the unmapped heap page: a true fault (the guest's PTE is absent),
        # injected -- 1; trap_pf's map_page stores the PTE into the heap table -- a pt_write, 1;
        # the retried load finds no shadow entry (filled read-only: the guest's dirty bit is not
        # set yet), the first store needs a writable one -- 2 hidden faults; unmap clears the
        # PTE -- a pt_write, 1.  (RDCR fault_addr is not a CR access that exits: only the PTBR
        # and the paging register are guarded.)
        PF: 1 + 1 + 2 + 1,
        # unmap's flush_page
        "INVLPG": 1,
    }},
    ("ptemod",) + H: {"counts": (10, 14), "per_iteration": {
        # map writes the PTE and unmap clears it: 2 pt_writes; the user's first access to the
        # fresh page is a store: 1 hidden fault (writable fill at once).  The frame zeroed by
        # alloc_zeroed_page is the one unmap freed (LIFO): its identity-map shadow entry is
        # writable since the first iteration.
        PF: 2 + 1,
        "INVLPG": 1,
    }},
    # two yields, each a system call whose return path schedules the other process:
    # switch_mm = WRCR ptbr (CR3-load exiting).  The other directory's shadow root is cached
    # since its first switch (a root hit): no page fault
    ("ctxswitch",) + H: {"counts": (10, 14), "per_iteration": {"CR_ACCESS": 2}},
    ("forkwait",) + H: {"counts": (10, 14), "per_iteration": {
        # switch_mm 3x: to the child (wait's return path), to kernel_pd (do_exit), back to the
        # parent (exit's return path)
        "CR_ACCESS": 3,
        # shadow faults, as under trap_emulate (golden/events_trap_emulate.py explains each):
        # 1 + 15 pt_writes (exit unhooks the table from the child's still-shadowed directory D,
        # fork zeroes D until the flood limit unshadows it) and 2 + 5 hidden faults (the rest of
        # zero_page(D) and copy_page into T in the parent's shadow; kernel code 0x2000, the
        # kernel stack, kernel code 0x1000, the child's code page and proc_table 0x3000 in the
        # child's rebuilt shadow).  The CPU's own deliveries (the child's exit system call) read
        # the vector table (0x2de0, on kernel page 0x2000) and push on the kernel stack: pages
        # already in that shadow.
        PF: (1 + 15) + (2 + 5),
    }},
}
