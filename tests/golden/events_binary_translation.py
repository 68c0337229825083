"""Golden per-iteration events of binary_translation for the workloads that
tests/test_binary_translation.py does not cover (it has syscall and callret).

Guest kernel code runs from the translation cache; every privileged or sensitive instruction is
a callout (``callout:emulate:<mnemonic>``), so are CALL/CALLR/RET (``callout:call`` /
``callout:ret``) and the end of a block that stops without a transfer (``callout:exit``: at a
page end or after MAX_BLOCK = 32 guest instructions; never chained).  A conditional branch or
JMP to the same guest page is chained after its first use.  User code runs directly; its traps
are reflected.  Stores to kernel data on a page that also holds translated code (kernel.s puts
its variables right after its code, on page 0x2000) fault until the block is retranslated with
the store as a callout (``adaptive_after`` = 3 faults): ``callout:store`` from then on.
"""
from ._common import ALLOCATOR, SYSCALL_PATH, emulated, times

C = "callout:emulate:"
B = ("binary_translation", None)

TIMER_PLACES = ("a timer interrupt that returns to user mode runs prepare_user_return (one more "
                "CALL/RET pair and its stores), and one that lands inside a block makes the "
                "monitor enter the cache at the interrupted guest pc (a new block, a new exit); "
                "the ticks fall at different places at the two counts")
FORK_PAGES = ("whether a store of fork's and exit's page-zeroing, copying and page-table code "
              "is already a store callout, or still faults (shadow:pt_write, bt:code_write), "
              "depends on how often that store's pc has faulted so far (adaptive_after = 3 per "
              "pc, over the whole run), and the pager's flood counting and rebuilt shadows "
              "follow from that: not derived here (trap_emulate's table derives the shadow "
              "events without callouts)")

TABLES = {
    # user code runs directly and never enters the kernel: nothing
    ("compute",) + B: {"counts": (24, 29), "per_iteration": {}},
    ("boot",) + B: {"counts": (24, 29), "per_iteration": {}, "same_ticks": True},
    ("io",) + B: {"counts": (10, 14), "per_iteration": {
        "reflect:syscall": 1,
        # the system-call path, plus blk_io's irq_save/irq_restore (the same PUSHF, CLI, POPF
        # as an allocator critical section) and its 3 OUTs and 1 IN
        **emulated(C, SYSCALL_PATH, ALLOCATOR, out=3, **{"in": 1}),
        # CALLR to sys_blkread, its CALL blk_io, CALL prepare_user_return; and their 3 RETs
        "callout:call": 3, "callout:ret": 3,
        # trap_syscall runs 32 guest instructions without an unconditional transfer before
        # the `stat` (save_all 15, movi/ld/movi/bne 4, sti, pushf, cli, lw 3 (la is 2
        # instructions), pcb 4, ld/addi/st 3): the block ends there with an exit callout
        "callout:exit": 1,
        # `stat stat_syscalls` stores to 0x2790, on code page 0x2000: a store callout.  The
        # PCB_SYSCALLS store goes to proc_table (page 0x3000, no code): a plain store
        "callout:store": 1,
    }},
    ("divzero",) + B: {"counts": (10, 14), "per_iteration": {
        # the user's DIV traps (#DE), reflected; trap_de returns with IRET
        "reflect:divide_error": 1, "callout:emulate:iret": 1,
        # trap_de runs 38 instructions to its `jmp ret_user_iret` with no unconditional
        # transfer: after 32 the block ends with an exit callout
        "callout:exit": 1,
        # ret_user_iret: CALL prepare_user_return and its RET
        "callout:call": 1, "callout:ret": 1,
        # `stat stat_divzero` (0x279c, code page 0x2000); PCB_DIVZERO is in proc_table (0x3000)
        "callout:store": 1,
    }},
    # The kernel-heavy paths.  The callouts that stand for the kernel's privileged and
    # sensitive instructions, the reflected traps and the shadow events: derivations in
    # events_trap_emulate.py and GOLDEN's ptemod.  CALL/RET/store/exit callouts also change
    # when a timer interrupt returns to user mode (prepare_user_return: one more CALL/RET and
    # its stores) and where it lands inside a block (the monitor enters the cache at the
    # interrupted pc: a new block and its exits): the counts below were chosen so the ticks
    # fall in equivalent places at both.  bt:translate and bt:chain stay excluded.
    ("pgfault",) + B: {"counts": (7, 8), "same_ticks": True, "per_iteration": {
        **emulated(C, SYSCALL_PATH, ALLOCATOR, ALLOCATOR, rdcr=1, iret=1, invlpg=1),
        "reflect:syscall": 1, "shadow:true_fault": 1, "shadow:hidden_fault": 2,
        # map_page's and unmap_page's PTE stores were retranslated into store callouts after
        # their first 3 faults (iterations 1-3): no pt_write any more
        "shadow:pt_write": 0,
        # trap_pf: alloc_zeroed_page -> alloc_frame, zero_page; cur_pd; map_page; then
        # ret_user_iret's prepare_user_return = 6.  unmap: CALLR sys_unmap, heap_va, cur_pd,
        # unmap_page -> pte_lookup, flush_page, free_frame, prepare_user_return = 8
        "callout:call": 6 + 8, "callout:ret": 6 + 8,
        # stat stat_demand_faults, alloc_frame's `sw nfree`, map_page's PTE store; unmap:
        # stat stat_syscalls, unmap_page's PTE store, free_frame's `sw nfree`
        "callout:store": 6,
    }, "excluded": {"callout:exit": TIMER_PLACES, "bt:translate": TIMER_PLACES,
                    "bt:chain": TIMER_PLACES}},
    ("ptemod",) + B: {"counts": (5, 8), "same_ticks": True, "per_iteration": {
        **emulated(C, times(SYSCALL_PATH, 2), ALLOCATOR, ALLOCATOR, invlpg=1),
        "reflect:syscall": 2,
        # the user's first store to the freshly mapped page: no shadow entry yet
        "shadow:hidden_fault": 1,
        "shadow:pt_write": 0,       # PTE stores are store callouts (adaptive retranslation)
        # map: CALLR sys_map, heap_va, cur_pd, pte_lookup, alloc_zeroed_page -> alloc_frame,
        # zero_page; map_page; prepare_user_return = 9.  unmap: as in pgfault, 8
        "callout:call": 9 + 8, "callout:ret": 9 + 8,
        # per system call: stat stat_syscalls, the PTE store, `sw nfree` (alloc / free)
        "callout:store": 3 + 3,
        # trap_syscall's 32-instruction block, twice; and sys_map starts at 0x1ff8: its
        # `push r8; push r9` end page 0x1000 (a fall-through exit, never chained)
        "callout:exit": 2 + 1,
    }, "excluded": {"bt:translate": TIMER_PLACES, "bt:chain": TIMER_PLACES}},
    ("ctxswitch",) + B: {"counts": (2, 5), "same_ticks": True, "per_iteration": {
        **emulated(C, times(SYSCALL_PATH, 2), wrcr=2),
        "reflect:syscall": 2, "shadow:root_hit": 2,
        # per yield: CALLR sys_yield, prepare_user_return -> schedule -> copy_regs (save),
        # copy_regs (load), switch_mm = 6
        "callout:call": 2 * 6, "callout:ret": 2 * 6,
        # per yield: stat stat_syscalls, sys_yield's `sw need_resched`, schedule's
        # `sw need_resched`, `sw current`, stat stat_switches (copy_regs writes the kernel
        # stack and proc_table, pages without code)
        "callout:store": 2 * 5,
        "callout:exit": 2,          # trap_syscall's 32-instruction block, per yield
        "bt:translate": 0, "bt:chain": 0,   # the loop's blocks exist and are chained
    }},
    ("forkwait",) + B: {"counts": (10, 14), "per_iteration": {
        # as under trap_emulate: 3 system calls, 8 allocator critical sections, 3 WRCRs
        **emulated(C, times(SYSCALL_PATH, 3), times(ALLOCATOR, 8), wrcr=3),
        "reflect:syscall": 3,
        # fork: CALLR sys_fork, find_free_slot, new_address_space -> alloc_pt ->
        #   alloc_zeroed_page -> alloc_frame, zero_page, then cur_pd (8); the user region's 2
        #   present pages: alloc_frame, copy_page, map_page each (6); the first map_page's
        #   alloc_pt -> alloc_zeroed_page -> alloc_frame, zero_page (4); init_pcb, copy_regs
        #   (2); prepare_user_return (1) = 8 + 6 + 4 + 2 + 1 = 21
        # wait: CALLR sys_wait (the child has not run: it blocks), prepare_user_return ->
        #   schedule -> copy_regs x2, switch_mm = 6
        # exit: CALLR sys_exit (-> jmp do_exit), switch_mm, free_address_space -> free_frame
        #   x2, free_pt x2 (free_pt is a JMP to free_frame: chained, no callout);
        #   prepare_user_return -> schedule -> copy_regs (nothing to save), switch_mm = 11
        # Timer ticks (about 2.4 per iteration) land in the kernel: user code is about 12 of
        # the iteration's 23 900 instructions, so no tick adds a prepare_user_return here.
        "callout:call": 21 + 6 + 11, "callout:ret": 21 + 6 + 11,
    }, "excluded": {**dict.fromkeys(("callout:exit", "callout:store", "bt:translate",
                                     "bt:chain"), TIMER_PLACES),
                    **dict.fromkeys(("shadow:pt_write", "shadow:hidden_fault",
                                     "shadow:root_hit", "shadow:root_new", "shadow:unshadow",
                                     "bt:code_write"), FORK_PAGES)}},
}
