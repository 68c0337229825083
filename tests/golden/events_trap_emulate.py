"""Golden per-iteration events of trap_emulate (strict ISA) for the workloads that
tests/test_golden_events.py's GOLDEN does not already cover (syscall, io, divzero, ptemod,
callret are there).

On the strict ISA every privileged or sensitive instruction of the guest kernel (ring 1) traps
with #GP and is emulated (``emulate:<mnemonic>``); a trap from user mode is reflected
(``reflect:<vector>``); a host page fault is a shadow-paging event (``shadow:*``): a *true*
fault is the guest's own #PF, delivered to it; a *hidden* fault only fills the shadow; a
*pt_write* is a store to a guest page table, write-protected so the shadow follows it.
"""
from ._common import ALLOCATOR, SYSCALL_PATH, emulated, times

E = "emulate:"
T = ("trap_emulate", True)

TABLES = {
    # user arithmetic only: nothing traps
    ("compute",) + T: {"counts": (24, 29), "per_iteration": {}},
    # one more compute step in the shell's child: user code, nothing traps.  Counts with the
    # same number of digits (the shell prints the count) and 2-digit exit statuses (40, 77).
    ("boot",) + T: {"counts": (24, 29), "per_iteration": {}, "same_ticks": True},
    ("pgfault",) + T: {"counts": (10, 14), "per_iteration": {
        # the load from the unmapped heap page: no shadow entry and no guest PTE either, so the
        # monitor delivers the guest's own #PF (counted as the true fault, nothing else)
        "shadow:true_fault": 1,
        # trap_pf: RDCR fault_addr; alloc_zeroed_page -> alloc_frame (one critical section);
        # map_page stores the PTE into the heap table (it exists since the first iteration:
        # unmap never frees it) -> one pt_write; ret_user_iret -> IRET
        # then unmap: one system call; unmap_page clears the PTE (pt_write), flush_page =
        # INVLPG, free_frame (one more critical section)
        **emulated(E, SYSCALL_PATH, ALLOCATOR, ALLOCATOR, rdcr=1, iret=1, invlpg=1),
        "reflect:syscall": 1,
        "shadow:pt_write": 2,
        # the retried load finds no shadow entry (filled read-only: the guest's dirty bit is not
        # set yet), then the first store needs a writable one: two hidden faults
        "shadow:hidden_fault": 2,
    }},
    ("ctxswitch",) + T: {"counts": (10, 14), "per_iteration": {
        # two yields (one per process), each a system call whose return path schedules the
        # other process: switch_mm = WRCR ptbr.  The other directory's shadow root exists since
        # its first switch: a root hit, no new shadow
        **emulated(E, times(SYSCALL_PATH, 2), wrcr=2),
        "reflect:syscall": 2, "shadow:root_hit": 2,
    }},
    ("forkwait",) + T: {"counts": (10, 14), "per_iteration": {
        # three system calls (fork, wait in the parent, exit in the child); three returns
        # with SYSRET: fork's to the parent, wait's into the child (the parent blocks, the
        # scheduler picks the child, which returns from fork), exit's into the parent
        **emulated(E, times(SYSCALL_PATH, 3), times(ALLOCATOR, 8), wrcr=3),
        # sysret is 3, the ALLOCATOR term adds 8 critical sections: fork allocates the child's
        # directory (alloc_pt), its first table (map_page -> alloc_pt) and one frame per user
        # page of the parent (forkwait is 47 words: one image page; one stack page) = 4;
        # exit frees the two user pages, the table and the directory = 4.
        # WRCR ptbr 3x: to the child, to kernel_pd in do_exit (ASID 0), back to the parent
        "reflect:syscall": 3,
        # Shadow paging.  The free list is LIFO: the child's exit frees its image copy I,
        # stack copy S, table T, directory D (in that order), and the next fork takes back D
        # as the directory, T as the image copy, S as the new table, I as the stack copy.
        # The child's shadow (key D | ASID 2) stays cached after it exits, so D is still a
        # write-protected guest page table when:
        #  * exit (in kernel_pd's shadow) unhooks the table from D: 1 emulated write;
        #  * fork zeroes D: 15 more writes make 16 in a row with no shadow fill through D,
        #    the pager's flood limit (unshadow_after = 16): it drops the child's shadow
        #    (D and T stop being watched) -- one unshadow, 1 + 15 = 16 pt_writes.
        "shadow:pt_write": 1 + 15, "shadow:unshadow": 1,
        # Hidden faults: in the parent's shadow, the rest of zero_page(D) and copy_page into T
        # (both frames' leaves were made read-only while they were page tables) = 2; then in
        # the child's rebuilt shadow, one per page first touched: kernel code 0x2000 (after
        # switch_mm's WRCR), the kernel stack, kernel code 0x1000 (prepare_user_return), the
        # child's code page, proc_table (0x3000, trap_syscall's accounting) = 5; exit switches
        # to kernel_pd at once.  (S, zeroed as the new table, was written as the stack copy
        # before: its leaf is writable; kernel_pd's and the parent's shadows have every other
        # leaf from earlier iterations.)
        "shadow:hidden_fault": 2 + 5,
        # WRCR to the child: its shadow was dropped -- a new root; to kernel_pd and back to the
        # parent: cached roots
        "shadow:root_new": 1, "shadow:root_hit": 2,
    }},
}
