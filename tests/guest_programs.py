"""A Hypothesis strategy for small, well-behaved guest kernels (shared by the monitor tests).

Every generated guest is a complete little operating system in assembly:

* **boot** (ring 0, paging off): a trap-vector table with handlers for #DE, #UD, #GP, #PF, the
  timer and system calls; a kernel stack for traps from ring 3 (``wrcr ksp``); optionally
  2-level page tables -- the kernel's identity map of all RAM (supervisor only), user pages at
  ``USER_VA`` (code, data, and *demand* pages the #PF handler maps on first touch), and
  optionally a second address space that shares the code page -- then paging on; optionally the
  timer;
* a random **kernel body**: arithmetic, loads and stores, CLI/STI sections, console output,
  reading the tick counter, control registers, page-table changes (always followed by INVLPG),
  address-space switches, divide errors, ``sti; hlt`` naps, counted loops and -- only for a strict
  machine -- ``pushf; cli; ...; popf``, GETCPL and RDTVB;
* a random **user program** (its op list emitted twice, so the second pass runs into whatever
  the first one changed) entered with SYSRET or IRET: arithmetic, loads and stores on its
  pages, demand-page touches, system calls (``putc``, ``getpid``, ``yield``, ``set_pte``, which
  changes one of its page-table entries and INVLPGs it), faulting
  instructions (privileged ones, divide by zero, kernel addresses), and finally ``exit``;
* after ``exit``, a little more kernel work, then HLT.

Handlers preserve every register they use, skip the faulting instruction for faults they cannot
fix, and return with IRET, so the program's behaviour is fully determined by its text: running
it natively and under a monitor must leave the same state.  The programs are *well-behaved*
in the sense shadow paging needs: a page-table entry is never changed without INVLPG, accessed
and dirty bits are never cleared by software.

``budget`` is drawn too (sometimes small), so runs also stop in the middle of the program.
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from kernel_sim.asm import assemble
from kernel_sim.monitors import ProgramImage

RAM = 0x40000                 # 256 KiB of guest RAM
TVB = 0x3000
KDATA = 0x4000                # kernel data page (r13 in the kernel)
KSTACK = 0x9000               # kernel stack for traps from ring 3 (page 0x8000)
PD_A, PT0, PT1_A = 0x10000, 0x11000, 0x12000
PD_B, PT1_B = 0x13000, 0x14000
USER_FRAMES_A = 0x20000       # user page k of space A is frame USER_FRAMES_A + k * 4096
USER_FRAMES_B = 0x28000       # space B: code page shared, pages 1..7 here
USER_VA_PAGED = 0x400000
USER_VA_FLAT = USER_FRAMES_A  # with paging off user code runs where it is
USER_PAGES = 8                # 0: code, 1..3: data, 4..7: demand-paged (space A)
DEMAND_FIRST = 4
BEYOND_RAM_FRAME = 0x80000
WORK = ("r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12")

# ---- the fixed parts of every kernel ------------------------------------------------------------
_BOOT = f"""
.org 0
start:
        li   r1, {TVB}
        li   r2, k_de
        st   r2, [r1 + 0]
        li   r2, k_skip
        st   r2, [r1 + 4 * 6]
        st   r2, [r1 + 4 * 13]
        li   r2, k_pf
        st   r2, [r1 + 4 * 14]
        li   r2, k_timer
        st   r2, [r1 + 4 * 32]
        li   r2, k_syscall
        st   r2, [r1 + 4 * 0x80]
        wrcr tvb, r1
        li   r1, {KSTACK}
        wrcr ksp, r1
        li   r13, {KDATA}
"""

_PAGING = f"""
        ; kernel identity map of all RAM, supervisor only
        li   r1, {PT0}
        movi r2, 3                  ; frame 0 | P | W
        li   r3, {RAM}
        li   r4, 4096
idmap:  st   r2, [r1]
        addi r1, r1, 4
        add  r2, r2, r4
        bltu r2, r3, idmap
        li   r1, {PD_A}
        li   r2, {PT0 | 7}
        st   r2, [r1]
        li   r2, {PT1_A | 7}
        st   r2, [r1 + 4]
        ; space A: code and data pages now, demand pages on first touch
        li   r1, {PT1_A}
        li   r2, {USER_FRAMES_A | 7}
        movi r3, {DEMAND_FIRST}
umap:   st   r2, [r1]
        addi r1, r1, 4
        add  r2, r2, r4
        addi r3, r3, -1
        bne  r3, r0, umap
        ; space B: same kernel table and code page, its own data pages, nothing demand-paged
        li   r1, {PD_B}
        li   r2, {PT0 | 7}
        st   r2, [r1]
        li   r2, {PT1_B | 7}
        st   r2, [r1 + 4]
        li   r1, {PT1_B}
        li   r2, {USER_FRAMES_A | 7}
        st   r2, [r1]
        li   r2, {USER_FRAMES_B | 7}
        movi r3, {USER_PAGES - 1}
umapb:  st   r2, [r1 + 4]
        addi r1, r1, 4
        add  r2, r2, r4
        addi r3, r3, -1
        bne  r3, r0, umapb
        li   r1, {PD_A}
        wrcr ptbr, r1
        movi r1, 1
        wrcr paging, r1
"""

_HANDLERS = f"""
; ---- trap handlers: preserve registers, return with IRET ----------------------------------------
k_skip:                             ; #UD, #GP: count, skip the instruction
        push r1
        ld   r1, [r13 + 8]
        addi r1, r1, 1
        st   r1, [r13 + 8]
        ld   r1, [sp + 8]           ; saved pc (frame starts at sp + 4)
        addi r1, r1, 4
        st   r1, [sp + 8]
        pop  r1
        iret
k_de:
        push r1
        ld   r1, [r13 + 12]
        addi r1, r1, 1
        st   r1, [r13 + 12]
        ld   r1, [sp + 8]
        addi r1, r1, 4
        st   r1, [sp + 8]
        pop  r1
        iret
k_timer:
        push r1
        ld   r1, [r13 + 0]
        addi r1, r1, 1
        st   r1, [r13 + 0]
        pop  r1
        iret
k_pf:                               ; map a demand page of space A, else skip the instruction
        push r1
        push r2
        push r3
        ld   r1, [r13 + 4]
        addi r1, r1, 1
        st   r1, [r13 + 4]
        rdcr r1, fault_addr
        li   r2, {USER_VA_PAGED + DEMAND_FIRST * 4096}
        bltu r1, r2, pf_skip
        li   r2, {USER_VA_PAGED + USER_PAGES * 4096}
        bgeu r1, r2, pf_skip
        rdcr r2, ptbr
        li   r3, {PD_A}
        bne  r2, r3, pf_skip
        shri r2, r1, 12
        andi r2, r2, 0x3ff
        shli r3, r2, 12
        shli r2, r2, 2
        li   r1, {PT1_A}
        add  r2, r2, r1
        li   r1, {USER_FRAMES_A | 7}
        add  r3, r3, r1
        st   r3, [r2]
        rdcr r1, fault_addr
        invlpg r1
        jmp  pf_done
pf_skip:
        ld   r1, [sp + 16]
        addi r1, r1, 4
        st   r1, [sp + 16]
pf_done:
        pop  r3
        pop  r2
        pop  r1
        iret
k_syscall:                          ; r0: 0 exit, 1 putc r1, 2 getpid, 3 yield, 4 set_pte
        beq  r0, r14, sys_exit      ; r14 == 0 in the kernel's handlers (set at boot)
        movi r14, 1
        bne  r0, r14, sys_2
        out  console, r1
        jmp  sys_ret
sys_2:  movi r14, 2
        bne  r0, r14, sys_3
        movi r0, 7
        jmp  sys_ret
sys_3:  movi r14, 3
        bne  r0, r14, sys_4
.if TWO_SPACES
        push r1
        push r2
        rdcr r1, ptbr
        li   r2, {PD_A}
        bne  r1, r2, to_a
        li   r1, {PD_B | 2}
        jmp  switch
to_a:   li   r1, {PD_A}
switch: wrcr ptbr, r1
        pop  r2
        pop  r1
.endif
        jmp  sys_ret
sys_4:  movi r14, 4                 ; 4 set_pte: PT1_A[r1] = r2, then INVLPG its page
        bne  r0, r14, sys_ret
        push r3
        shli r3, r1, 2
        li   r14, {PT1_A}
        add  r3, r3, r14
        st   r2, [r3]
        shli r3, r1, 12
        li   r14, {USER_VA_PAGED}
        add  r3, r3, r14
        invlpg r3
        pop  r3
sys_ret:
        movi r14, 0
        iret
sys_exit:
        li   sp, {KSTACK - 64}
"""


@dataclass(frozen=True)
class GuestProgram:
    """One generated guest: its assembly source and how long to run it."""

    source: str
    budget: int
    paging: bool
    strict: bool

    def image(self) -> ProgramImage:
        return ProgramImage.from_program(assemble(self.source, filename="generated.s"),
                                         ram_size=RAM)


# ---- random pieces ------------------------------------------------------------------------------
_reg = st.sampled_from(WORK)
_small = st.integers(-200, 200)
_alu = st.tuples(st.sampled_from(("add", "sub", "xor", "and", "or", "mul", "slt", "shl")),
                 _reg, _reg, _reg)


_pte_change = st.tuples(st.sampled_from(("remap", "readonly", "unmap", "restore", "beyond")),
                        st.integers(0, USER_PAGES - 1))


def _pte_value(k: int, change) -> int:
    how, other = change
    frame = USER_FRAMES_A + 4096 * k
    return {"remap": (USER_FRAMES_A + 4096 * other) | 7, "readonly": frame | 5, "unmap": 0,
            "restore": frame | 7, "beyond": BEYOND_RAM_FRAME | 7}[how]


def _kernel_op(paging: bool, strict: bool, timer: bool, two: bool):
    ops = [
        st.tuples(st.just("alu"), _alu),
        st.tuples(st.just("addi"), _reg, _reg, _small),
        st.tuples(st.just("kst"), _reg, st.integers(16, 255)),
        st.tuples(st.just("kld"), _reg, st.integers(16, 255)),
        st.tuples(st.just("clisti"), st.integers(0, 6)),
        st.tuples(st.just("putc"), st.integers(33, 126)),
        st.tuples(st.just("ticks"), st.integers(16, 255)),
        st.tuples(st.just("scratch"), _reg),
        st.tuples(st.just("div0"), _reg),
        st.tuples(st.just("loop"), st.integers(1, 30), st.integers(0, 3)),
        st.tuples(st.just("faulty_load"), _reg),
    ]
    if paging:
        ops += [st.tuples(st.just("pte"), st.integers(1, USER_PAGES - 1), _pte_change),
                st.tuples(st.just("kuser"), _reg, st.integers(1, USER_PAGES - 1),
                          st.integers(0, 1023), st.booleans())]
        if two:
            ops.append(st.tuples(st.just("switch"), st.booleans()))
    if timer:
        ops.append(st.tuples(st.just("nap")))
    if strict:
        ops += [st.tuples(st.just("pushf_cli"), st.integers(0, 4)),
                st.tuples(st.just("getcpl"), st.integers(16, 255)),
                st.tuples(st.just("rdtvb"), st.integers(16, 255))]
    return st.one_of(ops)


def _user_op(paging: bool, strict: bool, two: bool):
    ops = [
        st.tuples(st.just("alu"), _alu),
        st.tuples(st.just("addi"), _reg, _reg, _small),
        st.tuples(st.just("ust"), _reg, st.integers(1, 3), st.integers(0, 1023)),
        st.tuples(st.just("uld"), _reg, st.integers(1, 3), st.integers(0, 1023)),
        st.tuples(st.just("sys_putc"), st.integers(33, 126)),
        st.tuples(st.just("sys_getpid")),
        st.tuples(st.just("priv"), st.sampled_from(("cli", "sti", "hlt", "out console, r5",
                                                    "in r5, ticks", "wrcr scratch, r5",
                                                    "tlbflush", "iret"))),
        st.tuples(st.just("div0"), _reg),
        st.tuples(st.just("loop"), st.integers(1, 20), st.integers(0, 3)),
        st.tuples(st.just("kernel_touch"), _reg),
    ]
    if paging:
        ops.append(st.tuples(st.just("demand"), _reg, st.integers(DEMAND_FIRST, USER_PAGES - 1),
                             st.integers(0, 1023), st.booleans()))
        ops.append(st.tuples(st.just("sys_pte"), st.integers(1, USER_PAGES - 1), _pte_change))
        if two:
            ops.append(st.tuples(st.just("sys_yield")))
    if strict:
        ops.append(st.tuples(st.just("sensitive"), st.sampled_from(("getcpl r5", "rdtvb r6",
                                                                     "pushf", "popf"))))
    return st.one_of(ops)


class _Emitter:
    def __init__(self, paging: bool, strict: bool):
        self.lines: list = []
        self.labels = 0
        self.paging = paging
        self.strict = strict

    def label(self) -> str:
        self.labels += 1
        return f"g{self.labels}"

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    # kernel ops (ring 0, r13 = KDATA, r14 = 0)
    def kernel(self, op) -> None:
        kind = op[0]
        e = self.emit
        if kind == "alu":
            mn, a, b, c = op[1]
            e(f"        {mn} {a}, {b}, {c}")
        elif kind == "addi":
            e(f"        addi {op[1]}, {op[2]}, {op[3]}")
        elif kind == "kst":
            e(f"        st   {op[1]}, [r13 + {4 * op[2]}]")
        elif kind == "kld":
            e(f"        ld   {op[1]}, [r13 + {4 * op[2]}]")
        elif kind == "clisti":
            e("        cli", *[f"        addi r5, r5, {i + 1}" for i in range(op[1])],
              "        sti")
        elif kind == "putc":
            e(f"        movi r1, {op[1]}", "        out  console, r1")
        elif kind == "ticks":
            e("        in   r1, ticks", f"        st   r1, [r13 + {4 * op[1]}]")
        elif kind == "scratch":
            e(f"        wrcr scratch, {op[1]}", "        rdcr r1, scratch",
              "        st   r1, [r13 + 60]")
        elif kind == "div0":
            e(f"        div  {op[1]}, {op[1]}, r14")
        elif kind == "faulty_load":            # beyond RAM (paging off) or unmapped (paging on)
            e(f"        li   r1, {0x7FF000 if self.paging else RAM + 0x100}",
              f"        ld   {op[1]}, [r1]")
        elif kind == "loop":
            top = self.label()
            e(f"        movi r4, {op[1]}", f"{top}:", "        addi r6, r6, 3",
              *["        xor  r7, r7, r6"] * op[2], "        addi r4, r4, -1",
              f"        bne  r4, r14, {top}")
        elif kind == "pte":
            _, k, change = op
            e(f"        li   r1, {PT1_A + 4 * k}", f"        li   r2, {_pte_value(k, change)}",
              "        st   r2, [r1]", f"        li   r1, {USER_VA_PAGED + 4096 * k}",
              "        invlpg r1")
        elif kind == "kuser":
            _, reg, k, off, write = op
            e(f"        li   r1, {USER_VA_PAGED + 4096 * k}",
              f"        {'st' if write else 'ld'}   {reg}, [r1 + {4 * off}]")
        elif kind == "switch":
            e(f"        li   r1, {PD_B | (2 if op[1] else 0)}", "        wrcr ptbr, r1",
              "        addi r5, r5, 1", f"        li   r1, {PD_A}", "        wrcr ptbr, r1")
        elif kind == "nap":
            e("        sti", "        hlt")
        elif kind == "pushf_cli":
            e("        pushf", "        cli", *["        addi r8, r8, 5"] * op[1],
              "        popf")
        elif kind == "getcpl":
            e("        getcpl r1", f"        st   r1, [r13 + {4 * op[1]}]")
        elif kind == "rdtvb":
            e("        rdtvb r1", f"        st   r1, [r13 + {4 * op[1]}]")
        else:
            raise ValueError(kind)

    # user ops (ring 3, r13 = user data base, r14 = 0)
    def user(self, op, user_va: int) -> None:
        kind = op[0]
        e = self.emit
        if kind in ("alu", "addi", "div0"):
            self.kernel(op)
        elif kind in ("ust", "uld"):
            _, reg, page, off = op
            # r13 = page 1; pages 2, 3 through r12-free addressing: li a fresh base
            e(f"        li   r1, {user_va + 4096 * page}",
              f"        {'st' if kind == 'ust' else 'ld'}   {reg}, [r1 + {4 * off}]")
        elif kind == "sys_putc":
            e("        movi r0, 1", f"        movi r1, {op[1]}", "        syscall")
        elif kind == "sys_getpid":
            e("        movi r0, 2", "        syscall", "        add  r9, r9, r0")
        elif kind == "sys_pte":
            e("        movi r0, 4", f"        movi r1, {op[1]}",
              f"        li   r2, {_pte_value(op[1], op[2])}", "        syscall")
        elif kind == "sys_yield":
            e("        movi r0, 3", "        syscall")
        elif kind == "priv":
            e(f"        {op[1]}")
        elif kind == "loop":
            self.kernel(op)
        elif kind == "kernel_touch":
            e(f"        li   r1, {KDATA}", f"        ld   {op[1]}, [r1]")
        elif kind == "demand":
            _, reg, k, off, write = op
            e(f"        li   r1, {user_va + 4096 * k}",
              f"        {'st' if write else 'ld'}   {reg}, [r1 + {4 * off}]")
        elif kind == "sensitive":
            e(f"        {op[1]}")
        else:
            raise ValueError(kind)


@st.composite
def guest_programs(draw, strict: bool = False) -> GuestProgram:
    """A random well-behaved guest kernel with a user program (see the module docstring).

    ``strict=True`` lets the kernel use PUSHF/POPF/GETCPL/RDTVB and the user program try them
    (run such guests on a strict machine).
    """
    paging = draw(st.booleans())
    two = paging and draw(st.booleans())
    timer = draw(st.booleans())
    period = draw(st.integers(15, 400))
    kbody = draw(st.lists(_kernel_op(paging, strict, timer, two), max_size=14))
    ubody = draw(st.lists(_user_op(paging, strict, two), max_size=16))
    kafter = draw(st.lists(_kernel_op(paging, strict, False, two), max_size=4))
    enter = draw(st.sampled_from(("sysret", "iret_if", "iret_noif")))
    seeds = draw(st.lists(st.integers(0, 0xFFFF), min_size=len(WORK), max_size=len(WORK)))
    # one run in four stops early, somewhere in the middle of the program
    budget = draw(st.integers(20, 4000)) if draw(st.integers(0, 3)) == 0 else 200_000

    em = _Emitter(paging, strict)
    em.emit(f"TWO_SPACES = {int(two)}")
    em.emit(_BOOT)
    em.emit(*[f"        li   {r}, {s * 2654435761 & 0xFFFFFFFF}" for r, s in zip(WORK, seeds,
                                                                               strict=True)])
    if paging:
        em.emit(_PAGING)
    if timer:
        em.emit(f"        movi r1, {period}", "        out  timer, r1", "        sti")
    for op in kbody:
        em.kernel(op)
    # enter user mode: frame [sp] = 0, pc, cpl 3, flags, user sp
    user_va = USER_VA_PAGED if paging else USER_VA_FLAT
    flags = 0 if enter == "iret_noif" else 0x200
    em.emit(f"        li   r1, {user_va + 4 * 4096}",  # user stack: top of data page 3
            "        push r1", f"        li   r1, {flags}", "        push r1",
            "        movi r1, 3", "        push r1", f"        li   r1, {user_va}",
            "        push r1", "        push r14", "        movi r14, 0",
            f"        {'sysret' if enter == 'sysret' else 'iret'}")
    em.emit(_HANDLERS)
    for op in kafter:
        em.kernel(op)
    em.emit("        hlt")
    em.emit(f".org {USER_FRAMES_A}", "user:", "        movi r14, 0")
    for op in ubody + ubody:            # twice: what the first pass changed, the second sees
        em.user(op, user_va)
    em.emit("        movi r0, 0", "        syscall", "        jmp  user")
    return GuestProgram(source="\n".join(em.lines) + "\n", budget=budget, paging=paging,
                        strict=strict)
