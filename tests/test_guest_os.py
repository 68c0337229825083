"""The guest operating system (kernel_sim/guests/kernel.s) and its workloads, run natively.

Every expected number below is derived from the code's mechanism (which instructions and traps
one loop iteration makes), never copied from a run.  Counts that depend on where timer ticks
happen to fall are not asserted exactly; the ones asserted are fixed by the program's logic.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from kernel_sim import isa
from kernel_sim.guest import (
    BI_DONE,
    BI_INIT_STATUS,
    DONE_MAGIC,
    GUEST_RAM,
    HYPERCALLS,
    PROGRAMS,
    WORKLOADS,
    build_custom_guest,
    build_guest,
    kernel_program,
)
from kernel_sim.machine import Machine
from kernel_sim.state import (
    C_FAULT_ADDR,
    C_IF,
    C_PAGING,
    C_PTBR,
    C_STOP_ERROR,
    C_STOP_VECTOR,
    C_TICKS,
    C_TIMER_DEADLINE,
    C_TIMER_PERIOD,
    NEVER,
)

GOLDEN = Path(__file__).parent / "golden" / "guest_boot.txt"
BUDGET = 30_000_000
BOOT_LINE = "[kernel] boot: 1024 KiB RAM, 14 programs, timer period 10000\n"


def lcg_status(n: int) -> int:
    """What compute.s computes: n steps of x = x * 1103515245 + 12345 mod 2**32 from x = 1,
    exit status = top byte."""
    x = 1
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
    return x >> 24


@cache
def run(workload: str, count: int):
    """Run a workload natively; returns (result, machine).  Cached: tests only read them."""
    image = build_guest(workload, count)
    m = image.native_machine()
    result = m.run(count=BUDGET)
    return result, m, image


def events(result) -> dict:
    d = dict(result.events)
    d.update({"trap:" + k: v for k, v in result.traps.items()})
    d.update({"op:" + k: v for k, v in result.opcodes.items()})
    return d


# ---- every workload boots, runs and shuts down ------------------------------------------------
def expected_status(workload: str, count: int) -> int:
    # compute exits with the top byte of its result; every other init exits 0 when all its
    # checks passed (they exit with the number of mismatches, or the child's status 0)
    return lcg_status(count) if workload == "compute" else 0


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_runs_to_halt(workload):
    count = WORKLOADS[workload].default_count
    result, m, _ = run(workload, count)
    assert result.stop == "halt", result.stop_description
    assert result.cpl == 0 and not m.interrupts_enabled       # cli; hlt in the kernel
    assert m.read_word(4 * BI_DONE) == DONE_MAGIC
    status = expected_status(workload, count)
    assert m.read_word(4 * BI_INIT_STATUS) == status
    assert result.console.startswith(BOOT_LINE)
    assert result.console.endswith(f"[kernel] halt: init exit status {status}\n")
    assert "killed" not in result.console and "panic" not in result.console
    assert result.instructions < 5_000_000


def test_compute_status_follows_the_count():
    for n in (1, 7, 123):
        result, m, _ = run("compute", n)
        assert m.read_word(4 * BI_INIT_STATUS) == lcg_status(n)


# ---- per-iteration costs: the difference between two loop counts -----------------------------
# (workload, n1, n2, {event: expected increase per iteration}).  Why each number:
PER_ITERATION = [
    # the loop is mul/addi/addi/bne: one MUL per step, and the kernel uses no MUL at all
    ("compute", 500, 1500, {"op:MUL": 1, "trap:syscall": 0, "cr_writes": 0}),
    # one getpid = one SYSCALL trap and one SYSRET back; the entry's accounting is the only
    # pushf/cli/popf critical section on the getpid path; no address-space switch
    ("syscall", 30, 80, {"trap:syscall": 1, "sysret": 1, "op:PUSHF": 1, "op:POPF": 1,
                         "cr_writes": 0, "page_faults": 0}),
    # one blkread: the driver writes blk_sector, blk_buffer, blk_command (3 OUTs) and reads the
    # status (1 IN); the device copies one sector; two critical sections (accounting, driver)
    ("io", 30, 80, {"trap:syscall": 1, "io_out": 3, "io_in": 1, "blk_reads": 1,
                    "op:POPF": 2}),
    # the load from the unmapped heap page faults once; unmap is one system call that clears
    # the PTE and INVLPGs it; no TLB flush, no address-space switch
    ("pgfault", 30, 80, {"page_faults": 1, "trap:page_fault": 1, "trap:syscall": 1,
                         "invlpg": 1, "tlb_flushes": 0, "cr_writes": 0}),
    # map + unmap are two system calls; the page is mapped before it is touched (no fault);
    # unmap INVLPGs once
    ("ptemod", 30, 80, {"trap:syscall": 2, "page_faults": 0, "invlpg": 1, "tlb_flushes": 0}),
    # each of the two processes yields once per iteration and the other one is always
    # runnable, so each yield is a context switch = one WRCR ptbr (ASIDs: no flush).  A time
    # slice (2 ticks of 10 000 instructions) never runs out between two yields, so the timer
    # adds no switch.
    ("ctxswitch", 30, 80, {"trap:syscall": 2, "cr_writes": 2, "tlb_flushes": 0}),
    # kcall(n): n iterations of `call kcall_leaf` / `ret` inside one system call
    ("callret", 100, 600, {"op:CALL": 1, "op:RET": 1, "trap:syscall": 0}),
    # one DIV by zero = one #DE; no system call
    ("divzero", 30, 80, {"trap:divide_error": 1, "trap:syscall": 0, "page_faults": 0}),
    # fork + wait (parent) + exit (child) = 3 system calls; 3 address-space switches: to the
    # child, to the kernel's tables when the child exits (ASID 0: the one TLB flush), back to
    # the parent
    ("forkwait", 10, 25, {"trap:syscall": 3, "cr_writes": 3, "tlb_flushes": 1,
                          "page_faults": 0}),
    # each process writes one letter (one system call, one OUT) per chunk
    ("preempt", 5, 12, {"trap:syscall": 2, "io_out": 2}),
]


@pytest.mark.parametrize("workload,n1,n2,per_iteration", PER_ITERATION,
                         ids=[p[0] for p in PER_ITERATION])
def test_events_per_iteration(workload, n1, n2, per_iteration):
    a = events(run(workload, n1)[0])
    b = events(run(workload, n2)[0])
    for event, per in per_iteration.items():
        delta = b.get(event, 0) - a.get(event, 0)
        assert delta == per * (n2 - n1), (event, delta, n2 - n1)


def test_forkwait_counts_forks_in_the_kernel():
    # the kernel's own statistic: one successful fork per iteration
    deltas = []
    for n in (10, 25):
        _, m, image = run("forkwait", n)
        deltas.append(m.read_word(image.symbol("stat_forks")))
    assert deltas[1] - deltas[0] == 15


# ---- the boot workload --------------------------------------------------------------------------
def test_boot_console_matches_golden():
    result, _, _ = run("boot", WORKLOADS["boot"].default_count)
    assert result.stop == "halt"
    assert result.console == GOLDEN.read_text()
    assert result.instructions < 300_000


def test_boot_idles_with_sti_hlt_while_sleep_sleeps():
    # sleep(2) leaves nothing runnable: the idle loop's HLT skips ticks until the timer fires;
    # the last HLT (with interrupts off) stops the machine
    result, _, _ = run("boot", WORKLOADS["boot"].default_count)
    assert result.events["hlt"] >= 2
    assert result.events["idle_ticks"] > 0


# ---- POPF in a path that runs with interrupts enabled ------------------------------------------
def test_syscall_path_popf_turns_interrupts_back_on():
    """Every system call runs `pushf; cli; ...; popf` after STI: the POPF executes with IF = 0
    and pops a FLAGS word with IF = 1, i.e. it is the instruction that re-enables interrupts.
    (Run in ring 1 it would silently leave them off: the trap-and-emulate problem.)"""
    image = build_guest("syscall", 20)
    addr = image.symbol("syscall_irq_restore")
    assert isa.decode(image.kernel.word_at(addr))[0] == isa.OP_POPF
    m = image.native_machine()
    hits = 0
    while True:
        r = m.run(count=BUDGET, until=addr)
        if r.stop != "until":
            break
        sp = int(m.regs[isa.SP])
        assert m.ctrl[C_IF] == 0
        assert m.read_word(sp) & isa.FLAG_IF
        hits += 1
        m.run(count=1)
        assert m.ctrl[C_IF] == 1               # the POPF switched interrupts on
    assert r.stop == "halt"
    assert hits == 20 + 1                      # 20 getpid calls and the final exit


# ---- timer-driven preemption ------------------------------------------------------------------
def test_timer_preemption_interleaves_two_cpu_bound_processes():
    # preempt: parent prints 'a', child 'b' after each chunk; neither ever yields or blocks
    # before its loop ends, so only the timer can switch between them.  Each chunk is ~6000
    # instructions and a slice is 2 ticks of 10 000: each run of letters is a few chunks long.
    count = 20
    result, _, _ = run("preempt", count)
    letters = result.console[len(BOOT_LINE):result.console.index("[kernel] halt")]
    assert sorted(letters) == ["a"] * count + ["b"] * count    # both finished all chunks
    runs = 1 + sum(x != y for x, y in zip(letters[:-1], letters[1:], strict=True))
    assert runs >= 6                           # they alternated several times
    assert letters.index("b") < letters.rindex("a") and letters.index("a") < letters.rindex("b")
    assert result.traps["timer_interrupt"] >= runs - 1


# ---- the PARAVIRT build ------------------------------------------------------------------------
def text_words(prog):
    start, end = prog.symbols["boot"], prog.symbols["text_end"]
    return [(a, prog.word_at(a)) for a in range(start, end, 4)]


def test_paravirt_kernel_has_no_privileged_or_sensitive_instruction():
    def bad(prog):
        out = []
        for address, word in text_words(prog):
            ins = isa.BY_OPCODE.get(word >> 24)
            if ins is not None and ins.cls in (isa.PRIVILEGED, isa.SENSITIVE):
                out.append((hex(address), ins.mnemonic))
        return out

    assert bad(kernel_program(True)) == []
    plain = {m for _, m in bad(kernel_program(False))}   # the scan does find them natively
    assert {"WRCR", "OUT", "IN", "CLI", "STI", "HLT", "IRET", "SYSRET", "INVLPG", "PUSHF",
            "POPF", "RDCR"} <= plain
    vmcalls = [w for _, w in text_words(kernel_program(True)) if w >> 24 == isa.OP_VMCALL]
    assert {w & 0xFFFF for w in vmcalls} <= set(HYPERCALLS.values())
    assert not any(w >> 24 == isa.OP_VMCALL for _, w in text_words(kernel_program(False)))


def test_paravirt_kernel_stops_natively_at_its_first_vmcall():
    image = build_guest("syscall", 10, paravirt=True)
    result = image.native_machine().run(count=100_000)
    first = min(a for a, w in text_words(image.kernel) if w >> 24 == isa.OP_VMCALL)
    assert result.stop == "unhandled_trap"     # no vector table yet: #UD cannot be handled
    assert result.stop_vector == isa.VEC_UD
    assert result.pc == first
    assert image.kernel.word_at(first) & 0xFFFF == HYPERCALLS["set_trap_table"]


class MiniHypervisor:
    """Just enough of a Xen-style monitor, in Python, to boot the PARAVIRT kernel in ring 1.

    The guest sits at machine address MOFF (so PTEs must hold machine frames); every trap is
    intercepted; #UD on a VMCALL is a hypercall; other traps are bounced into the guest's
    handlers with the virtual interrupt flag of the shared info page.  The check that no frame
    of the running address space's tables is writable runs after every table change.
    """

    MOFF = 1 << 20
    FRAME = 0xFFFFF000

    def __init__(self, image):
        self.image, moff = image, self.MOFF
        self.m = m = Machine(memory_size=moff + image.ram_size, paging_levels=2, ring=1,
                             disk_sectors=image.disk_sectors)
        m.mem[moff // 4:(moff + image.ram_size) // 4] = image.ram
        m.mem[moff // 4 + 4] = moff                      # boot info word 4: machine offset
        m.disk[:] = image.disk
        m.reset()
        for i in range(image.ram_size // 4096):          # boot mapping: va -> moff + va
            m.mem[1024 + i] = (moff + 4096 * i) | 3
        m.mem[0] = 0x1000 | 3
        m.ctrl[C_PAGING], m.ctrl[C_PTBR], m.ctrl[C_IF] = 1, 0, 1
        m.pc = image.entry
        m.intercept[:] = 1
        self.shinfo = moff + int(image.ram[5])
        self.tvb = self.ksp = self.done = None
        self.guest_tables = False
        self.console = []
        self.calls = {}

    def pa(self, va):
        mem, root = self.m.mem, int(self.m.ctrl[C_PTBR]) & self.FRAME
        pde = int(mem[(root >> 2) + (va >> 22)])
        pte = int(mem[((pde & self.FRAME) >> 2) + ((va >> 12) & 0x3FF)])
        assert pde & pte & 1, f"hypervisor touched unmapped va 0x{va:x}"
        return (pte & self.FRAME) | (va & 0xFFF)

    def rd(self, va):
        return int(self.m.mem[self.pa(va) >> 2])

    def wr(self, va, value):
        self.m.mem[self.pa(va) >> 2] = value

    def shared(self, k, value=None):
        if value is not None:
            self.m.mem[(self.shinfo >> 2) + k] = value
        return int(self.m.mem[(self.shinfo >> 2) + k])

    def check_tables(self):
        if not self.guest_tables:
            return
        mem, root = self.m.mem, int(self.m.ctrl[C_PTBR]) & self.FRAME
        kpt = int(mem[root >> 2]) & self.FRAME
        frames = {root} | {int(e) & self.FRAME for e in mem[root >> 2:(root >> 2) + 1024] if e & 1}
        for f in frames:
            assert not mem[(kpt >> 2) + ((f - self.MOFF) >> 12)] & isa.PTE_W, hex(f)

    def deliver(self, vec, err, rp):
        m = self.m
        old_sp, old_cpl = int(m.regs[isa.SP]), m.cpl
        sp = self.ksp if old_cpl == 3 else old_sp
        for value in (old_sp, 0 if self.shared(0) else isa.FLAG_IF, old_cpl, rp, err):
            sp -= 4
            self.wr(sp, value)
        m.regs[isa.SP], m.cpl = sp, 1
        self.shared(0, 1)
        m.pc = self.rd(self.tvb + 4 * vec)

    def pending(self):
        if self.shared(1) and not self.shared(0):
            self.shared(1, 0)
            self.deliver(isa.VEC_TIMER, 0, self.m.pc)

    def hypercall(self, n):
        m, hc = self.m, HYPERCALLS
        r1, r2, r3 = (int(m.regs[k]) for k in (1, 2, 3))
        self.calls[n] = self.calls.get(n, 0) + 1
        lo, hi = self.MOFF, self.MOFF + self.image.ram_size
        result, m.pc = 0, m.pc + 4
        if n == hc["console_write"]:
            self.console.append(chr(r1 & 0xFF))
        elif n == hc["set_trap_table"]:
            self.tvb = r1
        elif n == hc["stack_switch"]:
            self.ksp = r1
        elif n == hc["mmu_update"]:
            for k in range(r2):
                addr, value = self.rd(r1 + 8 * k), self.rd(r1 + 8 * k + 4)
                assert lo <= addr < hi and (not value & 1 or lo <= (value & self.FRAME) < hi)
                m.mem[addr >> 2] = value
            m.tlb[:], result = 0, r2
            self.check_tables()
        elif n == hc["new_baseptr"]:
            assert lo <= (r1 & self.FRAME) < hi
            m.ctrl[C_PTBR], m.tlb[:], self.guest_tables = r1, 0, True
            self.check_tables()
        elif n in (hc["invlpg"], hc["tlb_flush"]):
            m.tlb[:] = 0
        elif n in (hc["iret"], hc["sysret"]):
            sp = int(m.regs[isa.SP])
            _, pc, cpl, flags, old_sp = (self.rd(sp + 4 * k) for k in range(5))
            if n == hc["sysret"]:
                cpl, flags = 3, isa.FLAG_IF
            assert cpl in (1, 3)
            m.pc, m.cpl, m.regs[isa.SP] = pc, cpl, old_sp
            self.shared(0, 0 if flags & isa.FLAG_IF else 1)
            self.pending()
            return
        elif n == hc["set_timer"]:
            m.ctrl[C_TIMER_PERIOD] = r1
            m.ctrl[C_TIMER_DEADLINE] = int(m.ctrl[C_TICKS]) + r1 if r1 else NEVER
        elif n == hc["block_io"]:
            assert r1 == 1 and 0 <= r2 < self.image.disk_sectors and lo <= r3 <= hi - 512
            m.mem[r3 >> 2:(r3 >> 2) + 128] = m.disk[128 * r2:128 * (r2 + 1)]
        elif n == hc["block"]:
            m.ctrl[C_TICKS] = max(int(m.ctrl[C_TICKS]), int(m.ctrl[C_TIMER_DEADLINE]))
        elif n == hc["event_check"]:
            m.regs[0] = 0
            self.pending()
            return
        elif n == hc["shutdown"]:
            self.done = r1
        else:
            assert n == hc["enable_paging"], f"unexpected hypercall {n}"
        m.regs[0] = result

    def run(self):
        m = self.m
        while self.done is None:
            r = m.run(count=BUDGET)
            assert r.stop == "trap_exit", r.stop_description
            vec, err = int(m.ctrl[C_STOP_VECTOR]), int(m.ctrl[C_STOP_ERROR])
            if vec == isa.VEC_UD and m.cpl == 1 and self.rd(m.pc) >> 24 == isa.OP_VMCALL:
                self.hypercall(self.rd(m.pc) & 0xFFFF)
            elif vec == isa.VEC_TIMER and self.shared(0):
                self.shared(1, 1)                   # masked: remember it for later
            else:
                assert m.cpl == 3 or vec in (isa.VEC_TIMER, isa.VEC_PF), \
                    f"vector {vec} in the PV kernel at {self.image.kernel.lines.get(m.pc)}"
                if vec == isa.VEC_PF:
                    self.shared(2, int(m.ctrl[C_FAULT_ADDR]))
                self.deliver(vec, err, m.pc)
        return "".join(self.console)


PV_COUNTS = {"compute": 300, "preempt": 4, "boot": 100, "callret": 50}


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_paravirt_kernel_under_a_minimal_hypervisor_matches_native(workload):
    count = PV_COUNTS.get(workload, 12)
    hv = MiniHypervisor(build_guest(workload, count, paravirt=True, batch=4))
    console = hv.run()
    native, _, _ = run(workload, count)
    assert console == native.console
    assert hv.done == expected_status(workload, count)
    assert hv.calls[HYPERCALLS["mmu_update"]] > 0
    assert HYPERCALLS["console_write"] in hv.calls


# ---- faults kill processes, not the kernel ------------------------------------------------------
BAD_CHILDREN = """
; fork four children; each does one bad thing; the parent prints every exit status
start:
        movi r8, 0
next:
        movi r0, SYS_FORK
        syscall
        movi r4, 0
        beq  r0, r4, child
        movi r0, SYS_WAIT
        syscall
        mov  r1, r0
        call lib_putdec
        la   r1, nl
        call lib_puts
        addi r8, r8, 1
        movi r4, 4
        bne  r8, r4, next
        movi r1, 0
        jmp  lib_exit
child:
        movi r4, 0
        beq  r8, r4, bad_opcode
        movi r4, 1
        beq  r8, r4, privileged
        movi r4, 2
        beq  r8, r4, kernel_memory
        movi r0, SYS_WRITE          ; 3: a pointer to unmapped memory outside the heap
        li   r1, 0x00600000
        movi r2, 1
        syscall
        movi r1, 99
        jmp  lib_exit
bad_opcode:
        .word 0
privileged:
        cli
kernel_memory:
        li   r1, 0x1000
        st   r1, [r1]
nl:     .string "\\n"
"""


def test_faults_kill_only_the_faulting_process():
    image = build_custom_guest(BAD_CHILDREN)
    result = image.native_machine().run(count=BUDGET)
    assert result.stop == "halt"
    lines = result.console.splitlines()
    # 128 + vector: #UD 6, #GP 13, #PF 14 (a user store to a supervisor page), #PF (the kernel
    # faulted on the bad pointer during write and killed the caller)
    assert [l for l in lines if l.isdigit()] == ["134", "141", "142", "142"]
    kills = [l for l in lines if "killed" in l]
    assert kills[0].startswith("[kernel] pid 2 killed: invalid opcode at 0x004")
    assert "general protection fault" in kills[1] and "page fault at 0x00001000" in kills[2]
    assert "page fault at 0x00600000" in kills[3]
    assert lines[-1] == "[kernel] halt: init exit status 0"


def test_kernel_demand_pages_a_heap_buffer_it_reads_for_write():
    # write() from a heap page never touched: the kernel's own load faults (in ring 0), the
    # #PF handler maps a zeroed page and the kernel carries on: one NUL character is printed
    src = """
start:  movi r0, SYS_WRITE
        li   r1, HEAP_BASE + 0x2000
        movi r2, 1
        syscall
        mov  r1, r0
        jmp  lib_exit
"""
    result = build_custom_guest(src).native_machine().run(count=BUDGET)
    assert result.stop == "halt"
    assert result.traps["page_fault"] == 1
    assert "\x00" in result.console and result.console.endswith("exit status 1\n")


def test_wait_without_children_and_bad_arguments_fail_cleanly():
    src = """
start:  movi r0, SYS_WAIT           ; no children: -1
        syscall
        mov  r9, r0
        movi r0, SYS_MAP            ; outside the heap: -1
        li   r1, 0x00500000
        syscall
        add  r9, r9, r0
        movi r0, SYS_UNMAP          ; nothing mapped there: -1
        li   r1, HEAP_BASE
        syscall
        add  r9, r9, r0
        movi r0, SYS_SPAWN          ; no such program: -1
        movi r1, 200
        syscall
        add  r9, r9, r0
        movi r0, 99                 ; no such system call: -1
        syscall
        add  r9, r9, r0
        movi r0, SYS_BLKREAD        ; beyond the disk: -1
        li   r1, 100000
        syscall
        add  r9, r9, r0
        sub  r1, r4, r9             ; r4 = 0: status = 6
        jmp  lib_exit
"""
    result = build_custom_guest(src).native_machine().run(count=BUDGET)
    assert result.stop == "halt"
    assert result.console.endswith("init exit status 6\n")


# ---- the image and the builder -----------------------------------------------------------------
def test_image_layout_and_machine():
    image = build_guest("io", 5)
    assert image.ram.shape == (GUEST_RAM // 4,) and image.ram.dtype == np.uint32
    assert image.disk.shape == (image.disk_sectors * 128,)
    assert image.entry == image.symbol("boot") == 0x1000
    assert image.programs == {name: i for i, name in enumerate(PROGRAMS)}
    assert list(image.ram[:4]) == [0x4B53494D, image.programs["io"], 5, GUEST_RAM]
    assert image.disk[0] == 0x4B53444B and image.disk[1] == len(PROGRAMS)
    assert image.symbol("kernel_end") % 4096 == 0
    m = image.native_machine(tlb_size=16)
    assert m.memory_size == GUEST_RAM and m.disk_sectors == image.disk_sectors
    assert m.pc == image.entry and m.cpl == 0 and m.tlb_size == 16
    assert np.array_equal(m.disk, image.disk)
    # images do not share their arrays
    other = build_guest("io", 5)
    other.ram[100] = 12345
    assert image.ram[100] != 12345
    with pytest.raises(KeyError, match="did you mean 'stat_forks'"):
        image.symbol("stat_fork")
    with pytest.raises(ValueError, match="fixed by the guest image"):
        image.native_machine(memory_size=1 << 22)


def test_build_guest_bad_input():
    with pytest.raises(ValueError, match="Did you mean 'syscall'.*Known workloads: compute"):
        build_guest("syscal")
    with pytest.raises(ValueError, match="Known workloads"):
        build_guest("linux")
    with pytest.raises(TypeError):
        build_guest(3)
    for bad in (0, -1, 1_000_001):
        with pytest.raises(ValueError, match="count must be between 1 and 1,000,000"):
            build_guest("syscall", bad)
    for bad in (1.5, True, "10"):
        with pytest.raises(TypeError):
            build_guest("syscall", bad)
    for bad in (0, 65):
        with pytest.raises(ValueError, match="batch"):
            build_guest("syscall", 10, paravirt=True, batch=bad)
    with pytest.raises(ValueError, match="one block of words"):
        build_custom_guest(".org 0x500000\nstart: nop")
    with pytest.raises(Exception, match="undefined symbol"):
        build_custom_guest("start: jmp nowhere")


def test_syscall_numbers_agree_everywhere():
    # the builder's table, the user library's SYS_* constants, the kernel's dispatch table and
    # the ISA module's list of the course's system calls all use the same numbers
    from kernel_sim.guest import SYSCALL_NUMBERS, assemble_user
    lib = assemble_user("start: nop").symbols
    assert {name: lib["SYS_" + name.upper()] for name in SYSCALL_NUMBERS} == SYSCALL_NUMBERS
    assert sorted(SYSCALL_NUMBERS.values()) == list(range(len(SYSCALL_NUMBERS)))
    for paravirt in (False, True):
        assert kernel_program(paravirt).symbols["NSYSCALLS"] == len(SYSCALL_NUMBERS)
    for number, name, _ in isa.SYSCALLS:
        assert SYSCALL_NUMBERS[name] == number


def test_module_docstring_example():
    import doctest

    import kernel_sim.guest as guest_module
    failures, tried = doctest.testmod(guest_module)
    assert tried > 0 and failures == 0
