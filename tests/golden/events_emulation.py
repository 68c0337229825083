"""Golden per-iteration events of emulation (both modes) for the workloads that
tests/test_golden_events.py's GOLDEN does not already cover (syscall and io, both modes).

interpret (Bochs): every guest instruction is dispatched one by one (``emulation:interpreted``).
translate (QEMU): innocuous instructions run from translated blocks, keyed by guest-physical pc;
a block ends after a control transfer (conditional branches too), before an instruction it
cannot hold (privileged, sensitive, SYSCALL: those are interpreted one by one), at a page end;
every block entry looks the cache up (no chaining): ``tb_enter`` = ``block_cache_hits`` when
nothing new is translated.  ``emulation:device`` counts port accesses (OUT/IN).
In kernel.s ``la`` and ``li`` are two instructions each (a 32-bit constant in two halves).
"""
from ._common import ALLOCATOR, NATIVE, SOFT_TLB, SYSCALL_PATH, times

I = ("emulation:interpret", None)
X = ("emulation:translate", None)
TLB = {"emulation:soft_tlb_hits": SOFT_TLB, "emulation:soft_tlb_misses": SOFT_TLB}

BLOCK_CACHE = ("the block cache is direct-mapped on the word address (4096 slots: guest-physical "
               "addresses 16 KiB apart share a slot), and init's image lies at 0xFE000, the "
               "first frames the kernel hands out, which is 0x2000 modulo 16 KiB: user blocks "
               "evict kernel blocks of page 0x2000 at the same offsets (ptemod: user 0x24/0x50 "
               "against sys_map's 0x2024/0x2050) and a timer interrupt makes the next entry "
               "start a block at the interrupted pc.  Translations and entries per iteration are "
               "therefore not a clean constant; tb_executed + interpreted = the native "
               "instructions is checked instead")
TB_STATS = {name: BLOCK_CACHE for name in (
    "emulation:translations", "emulation:translated_insns", "emulation:tb_enter",
    "emulation:block_cache_hits", "emulation:tb_executed", "emulation:tb_invalidations")}


def non_innocuous(*parts, **extra):
    """Instructions translate mode interprets: the privileged/sensitive ones and SYSCALL."""
    return sum(sum(p.values()) for p in parts) + sum(extra.values())


TABLES = {
    # ---- interpret: the interpreter dispatches exactly the guest's instructions
    # compute: mul, addi, addi, bne (counts 24/29: both exit statuses have 2 digits)
    ("compute",) + I: {"counts": (24, 29), "per_iteration": {"emulation:interpreted": 4},
                       "excluded": TLB},
    ("boot",) + I: {"counts": (24, 29), "per_iteration": {"emulation:interpreted": 4},
                    "excluded": TLB, "same_ticks": True},
    # kcall loop: beq, call kcall_leaf, addi, ret, addi, jmp
    ("callret",) + I: {"counts": (10, 14), "per_iteration": {"emulation:interpreted": 6},
                       "excluded": TLB},
    # user: beq, movi, (the DIV faults: it does not retire), movi, beq, addi, jmp = 6
    # trap_de: save_all 15, movi/ld/movi/bne 4, lw 3, pcb 4, ld/addi/st 3, stat 5,
    #          ld/addi/st 3, jmp 1 = 38
    # ret_user_iret: call 1, prepare_user_return (lw 3, blt, pcb 4, ld, movi, bne, lw 3, beq,
    #          ret = 16), restore_all 15, iret 1 = 33.        6 + 38 + 33 = 77
    ("divzero",) + I: {"counts": (10, 14), "per_iteration": {"emulation:interpreted": 77},
                       "excluded": TLB},
    # kernel paths of hundreds to thousands of instructions (page zeroing and copying loops),
    # where the timer handler's path also depends on where ticks fall: the count is checked
    # against the native machine at the same loop counts (the same guest, the same time)
    **{(w,) + I: {"counts": (10, 14), "per_iteration": {"emulation:interpreted": NATIVE},
                  "excluded": TLB}
       for w in ("pgfault", "ptemod", "ctxswitch", "forkwait")},

    # ---- translate
    # compute: the loop mul/addi/addi/bne is one block, entered once per step
    ("compute",) + X: {"counts": (24, 29), "per_iteration": {
        "emulation:tb_executed": 4, "emulation:tb_enter": 1, "emulation:block_cache_hits": 1,
        "emulation:interpreted": 0, "emulation:translations": 0}, "excluded": TLB},
    ("boot",) + X: {"counts": (24, 29), "per_iteration": {
        "emulation:tb_executed": 4, "emulation:tb_enter": 1, "emulation:block_cache_hits": 1,
        "emulation:interpreted": 0},
        "excluded": {**TLB, "emulation:translated_insns": (
            "the ticks fall 4 instructions later per compute step: a block entered at an "
            "interrupted pc has a different length at the two counts")},
        "same_ticks": True},
    # kcall loop: [beq] [call] [addi ret] [addi jmp]: 4 blocks, 6 instructions
    ("callret",) + X: {"counts": (10, 14), "per_iteration": {
        "emulation:tb_executed": 6, "emulation:tb_enter": 4, "emulation:block_cache_hits": 4,
        "emulation:interpreted": 0, "emulation:translations": 0}, "excluded": TLB},
    # divzero: IRET is the only instruction interpreted; blocks: user [beq] [movi div..]
    # (leaves at the #DE after 1) [movi beq] [addi jmp] = 6 instructions in 4 entries; kernel
    # trap_de [..bne] 19 + [..jmp] 19, [call] 1, prepare_user_return [lw blt] 4,
    # [pcb ld movi bne] 7, [lw beq] 4, [ret] 1, restore_all 15 = 70 in 8 entries
    ("divzero",) + X: {"counts": (10, 14), "per_iteration": {
        "emulation:interpreted": 1, "emulation:tb_executed": 6 + 70,
        "emulation:tb_enter": 4 + 8, "emulation:block_cache_hits": 4 + 8,
        "emulation:translations": 0}, "excluded": TLB},
    # interpreted = the instructions trap_emulate emulates or reflects on the same path
    # (derivations in events_trap_emulate.py and GOLDEN's ptemod), plus the timer's IRETs
    # (subtracted by the test)
    ("pgfault",) + X: {"counts": (10, 14), "per_iteration": {
        "emulation:interpreted": non_innocuous(SYSCALL_PATH, ALLOCATOR, ALLOCATOR, syscall=1,
                                               rdcr=1, iret=1, invlpg=1),
        "emulation:device": 0}, "excluded": {**TLB, **TB_STATS}},
    ("ptemod",) + X: {"counts": (10, 14), "per_iteration": {
        "emulation:interpreted": non_innocuous(times(SYSCALL_PATH, 2), ALLOCATOR, ALLOCATOR,
                                               syscall=2, invlpg=1),
        "emulation:device": 0}, "excluded": {**TLB, **TB_STATS}},
    ("ctxswitch",) + X: {"counts": (10, 14), "per_iteration": {
        "emulation:interpreted": non_innocuous(times(SYSCALL_PATH, 2), syscall=2, wrcr=2),
        "emulation:device": 0}, "excluded": {**TLB, **TB_STATS}},
    ("forkwait",) + X: {"counts": (10, 14), "per_iteration": {
        "emulation:interpreted": non_innocuous(times(SYSCALL_PATH, 3), times(ALLOCATOR, 8),
                                               syscall=3, wrcr=3),
        "emulation:device": 0}, "excluded": {**TLB, **TB_STATS}},
}
