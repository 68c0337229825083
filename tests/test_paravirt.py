"""The paravirt technique: a Xen-style monitor running the PARAVIRT=1 guest kernel.

Expected numbers are derived from the kernel's code (``guests/kernel.s``) and the hypercall ABI,
never copied from a run; the comments say where each comes from.  Counts that depend on where
timer ticks fall (timer deliveries, ``event_check``, the ``iret`` of a timer interrupt) are not
asserted exactly.
"""
from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from kernel_sim import isa
from kernel_sim.asm import assemble
from kernel_sim.costs import technique_costs
from kernel_sim.guest import (
    GUEST_RAM,
    HYPERCALLS,
    WORKLOADS,
    build_guest,
    kernel_program,
    user_program,
)
from kernel_sim.monitors import ProgramImage, monitor_class, run_technique
from kernel_sim.monitors.base import MONITOR_BYTES, MonitorError
from kernel_sim.monitors.paravirt import Paravirt
from kernel_sim.state import C_CYCLES, C_PTBR, C_UNTIL

BUDGET = 30_000_000
PAGE = 4096


def lcg_status(n: int) -> int:
    x = 1
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
    return x >> 24


@cache
def native(workload: str, count: int):
    return run_technique(build_guest(workload, count), "native", count=BUDGET)


@cache
def pv(workload: str, count: int, batch: int = 8):
    """Run the PARAVIRT build to its shutdown; returns (result, monitor)."""
    mon = Paravirt(build_guest(workload, count, paravirt=True, batch=batch))
    return mon.run(BUDGET), mon


@cache
def pv_until_done(workload: str, count: int, batch: int = 8):
    """Run the PARAVIRT build until the user program reaches its label ``done`` (the loop is
    over, the process is in user mode, so the kernel's PTE queue has just been flushed)."""
    image = build_guest(workload, count, paravirt=True, batch=batch)
    mon = Paravirt(image)
    mon._boot()
    mon.host.ctrl[C_UNTIL] = user_program(WORKLOADS[workload].program).symbols["done"]
    mon.ran = True
    mon._run(BUDGET)
    result = mon.result()
    assert result.stop == "until", result.notes
    return result, mon


def ev(result, name: str) -> int:
    return result.monitor_events.get(name, 0)


# ================================================================================================
# 1. equivalence: every workload prints and leaves for its programs what it does natively
# ================================================================================================
COUNTS = {"compute": 300, "boot": 100, "callret": 50}
TIMING_DEPENDENT = {"preempt"}      # its output interleaves where timer ticks fall


@pytest.mark.parametrize("workload", sorted(set(WORKLOADS) - TIMING_DEPENDENT))
def test_every_workload_matches_native(workload):
    count = COUNTS.get(workload, 12)
    r, mon = pv(workload, count, 4)
    nat = native(workload, count)
    assert nat.stop == "halt" and r.stop == "halt", r.notes
    assert r.console == nat.console
    assert r.user_digest == nat.user_digest
    check_clean_shutdown(r, mon, workload, count)


def test_preempt_interleaves_through_the_virtual_timer():
    """preempt's two processes print a letter per chunk and never yield: only timer interrupts
    switch them, so the order of the letters depends on where ticks fall (the PV kernel runs
    other instructions than the native one).  What its programs do is the same: every letter is
    printed, the processes alternate several times, the rest of the console is native's."""
    count = 20
    r, mon = pv("preempt", count, 4)
    nat = native("preempt", count)

    def letters(console):
        start = console.index("\n") + 1
        return console[start:console.index("[kernel] halt")]

    assert r.stop == "halt"
    got = letters(r.console)
    assert sorted(got) == sorted(letters(nat.console)) == ["a"] * count + ["b"] * count
    assert r.console.replace(got, "") == nat.console.replace(letters(nat.console), "")
    runs = 1 + sum(x != y for x, y in zip(got[:-1], got[1:], strict=True))
    assert runs >= 6
    assert ev(r, "reflect:timer_interrupt") >= runs - 1
    check_clean_shutdown(r, mon, "preempt", count)


def check_clean_shutdown(r, mon, workload, count):
    status = lcg_status(count) if workload == "compute" else 0
    assert mon.exit_status == status
    assert r.console.endswith(f"[kernel] halt: init exit status {status}\n")
    assert r.cpl == 1                                   # the kernel shut down from ring 1
    assert mon.check_invariants() == []
    assert not any(k.startswith(("paravirt:refused", "paravirt:privileged")) for k in
                   r.monitor_events)
    # the kernel never enters the monitor for anything but hypercalls, reflected traps, its
    # timer and page-table bookkeeping
    known = ({f"hypercall:{name}" for name in HYPERCALLS} |
             {f"reflect:{key}" for key in isa.VECTOR_KEYS.values()} |
             {"paravirt:pte_updates", "paravirt:validate_table", "paravirt:release_table",
              "timer:pending", "monitor:preempt"})
    assert set(r.monitor_events) <= known


@pytest.mark.parametrize("workload", ["ptemod", "pgfault", "syscall"])
def test_user_state_mid_run_matches_native_through_machine_frames(workload):
    """Stopped at the program's ``done`` label, the user-visible state (console, every page ring
    3 can read, registers) is native's.  The PV tables hold *machine* frames, so this only holds
    if the view converts them back to guest-physical addresses."""
    count = 7
    r, mon = pv_until_done(workload, count)
    done = user_program(WORKLOADS[workload].program).symbols["done"]
    m = build_guest(workload, count).native_machine()
    nat = m.run(count=BUDGET, until=done)
    assert nat.stop == "until" and r.pc == done and r.cpl == 3
    assert r.user_digest == nat.user_digest
    view = mon.view()
    pages = dict(view.user_pages())
    code = user_program(WORKLOADS[workload].program).segments[0][1]
    assert np.array_equal(pages[0x00400000][:len(code)], code)
    root = int(mon.host.ctrl[C_PTBR]) & 0xFFFFF000
    assert root >= MONITOR_BYTES                        # a machine address, not guest-physical
    assert mon.check_invariants() == []


# ================================================================================================
# 2. golden event tables
# ================================================================================================
# Per iteration of the loop (the difference between two counts, both runs stopped at the user
# program's `done`).  Why each number, from kernel.s:
#  * a system call is a trap from ring 3: the CPU cannot deliver it to ring 1 itself, so the
#    monitor reflects it (reflect:syscall) and the kernel returns with k_sysret = the sysret
#    hypercall.  irq_enable / irq_save / irq_restore only store to the shared info page.
#  * every return to user mode calls mmu_flush, so a PTE write made by one system call or fault
#    is handed over before user code runs: one mmu_update per call that writes a PTE.
PER_ITERATION = [
    # getpid: one reflected syscall, one sysret, nothing touches the page tables
    ("syscall", 10, 30, {"reflect:syscall": 1, "hypercall:sysret": 1,
                         "hypercall:mmu_update": 0, "paravirt:pte_updates": 0,
                         "hypercall:new_baseptr": 0, "hypercall:invlpg": 0}),
    # blkread: the driver's 3 OUTs and 1 IN are one block_io hypercall
    ("io", 10, 30, {"reflect:syscall": 1, "hypercall:sysret": 1, "hypercall:block_io": 1,
                    "hypercall:mmu_update": 0}),
    # map: map_page queues one PTE (the heap table exists after the first iteration), flushed
    # before the return; unmap: unmap_page queues the cleared PTE, flush_page flushes it and
    # makes the invlpg hypercall.  Two PTE updates in two mmu_update hypercalls.
    ("ptemod", 10, 30, {"reflect:syscall": 2, "hypercall:sysret": 2,
                        "hypercall:mmu_update": 2, "paravirt:pte_updates": 2,
                        "hypercall:invlpg": 1, "reflect:page_fault": 0,
                        "hypercall:new_baseptr": 0, "paravirt:validate_table": 0}),
    # the #PF is reflected (the fault address goes to shared info word 2); trap_pf maps a
    # zeroed page (one PTE, flushed on the way back) and returns with k_iret; then unmap
    ("pgfault", 10, 30, {"reflect:page_fault": 1, "reflect:syscall": 1, "hypercall:sysret": 1,
                         "hypercall:mmu_update": 2, "paravirt:pte_updates": 2,
                         "hypercall:invlpg": 1, "hypercall:new_baseptr": 0}),
    # each yield is a context switch: switch_mm = one new_baseptr.  Both directories were
    # validated and pinned the first time they were loaded; switching back costs no validation
    ("ctxswitch", 10, 30, {"reflect:syscall": 2, "hypercall:sysret": 2,
                           "hypercall:new_baseptr": 2, "paravirt:validate_table": 0,
                           "hypercall:mmu_update": 0}),
    # one #DE reflected; trap_de returns with k_iret
    ("divzero", 10, 30, {"reflect:divide_error": 1, "reflect:syscall": 0,
                         "hypercall:mmu_update": 0}),
    # user arithmetic: the monitor is not involved at all
    ("compute", 100, 300, {"reflect:syscall": 0, "hypercall:mmu_update": 0,
                           "hypercall:sysret": 0}),
]


@pytest.mark.parametrize("workload,n1,n2,per_iteration", PER_ITERATION,
                         ids=[p[0] for p in PER_ITERATION])
def test_monitor_events_per_iteration(workload, n1, n2, per_iteration):
    a, _ = pv_until_done(workload, n1)
    b, _ = pv_until_done(workload, n2)
    for event, per in per_iteration.items():
        assert ev(b, event) - ev(a, event) == per * (n2 - n1), event
    # every trap the kernel handles returns with exactly one iret, timer interrupts included:
    # iret = (reflected traps other than system calls) + 1 (boot enters user mode with k_iret)
    for r in (a, b):
        others = sum(v for k, v in r.monitor_events.items()
                     if k.startswith("reflect:") and k != "reflect:syscall")
        assert ev(r, "hypercall:iret") == others + 1


@pytest.mark.parametrize("count", [30, 80])
def test_syscall_golden_table(count):
    """The whole run of the syscall workload with batch 1, every hypercall accounted for."""
    r, mon = pv("syscall", count, 1)
    image = build_guest("syscall", count, paravirt=True, batch=1)
    program_words = int(image.disk[4 + 4 * image.programs["syscall"] + 1])
    # boot: 256 identity-map PTEs of kernel_pt + directory entry 0 of kernel_pd; init: its
    # directory (made read-only, entry 0), its first table (read-only, directory entry 1),
    # the image page's PTE, the stack page's PTE; exit: directory entry 1 cleared, the table
    # and the directory made writable again, directory entry 0 cleared.  Batch 1: one each.
    pte = (GUEST_RAM // PAGE + 1) + (2 + 2 + 1 + 1) + 4
    expected = {
        "reflect:syscall": count + 1,           # count getpid calls and the exit
        "hypercall:sysret": count,               # exit never returns
        "hypercall:mmu_update": pte, "paravirt:pte_updates": pte,
        # kernel_pd at boot, init's directory, kernel_pd again when init exits
        "hypercall:new_baseptr": 3,
        # boot: kernel_pd + kernel_pt; init's first load: its directory + its table
        "paravirt:validate_table": 4,
        # exit: free_pt makes init's table, then its directory, writable: no longer tables
        "paravirt:release_table": 2,
        "hypercall:invlpg": 2,                   # alloc_pt's flush_page, twice (init's tables)
        "hypercall:set_trap_table": 1, "hypercall:stack_switch": 1,
        "hypercall:enable_paging": 1, "hypercall:set_timer": 1, "hypercall:shutdown": 1,
        # the disk directory, then the program's sectors
        "hypercall:block_io": 1 + -(-program_words // 128),
        "hypercall:console_write": len(r.console),   # one character per hypercall
    }
    for name, value in expected.items():
        assert ev(r, name) == value, name
    # with batch 1 nothing is ever left in the kernel's queue
    assert mon.view().memory[image.symbol("pte_qlen") // 4] == 0
    # costs: every hypercall is one entry and one return plus its handler; mmu_update also pays
    # hypercall_pte for every entry it validates
    c = technique_costs("modern")
    exit_cost = c["monitor_entry"] + c["monitor_return"]
    assert r.event_cycles["hypercall:sysret"] == count * (exit_cost + c["hypercall"])
    assert r.event_cycles["hypercall:mmu_update"] == pte * (exit_cost + c["hypercall"] +
                                                            c["hypercall_pte"])
    assert r.event_cycles["reflect:syscall"] == (count + 1) * (exit_cost + c["reflect"])
    assert r.cycles == sum(r.cycles_by_category.values())
    assert r.cycles_by_category["guest"] == int(mon.host.ctrl[C_CYCLES]) > 0
    assert r.cycles_by_category["memory"] >= pte * c["hypercall_pte"]


# ---- the batch size -----------------------------------------------------------------------
BOOT_MAP = GUEST_RAM // PAGE             # 256 PTEs of the kernel's identity map


@pytest.mark.parametrize("workload", ["ptemod", "pgfault"])
def test_batch_size_does_not_change_ptemod_or_pgfault_per_iteration(workload):
    """Each system call or fault of these loops writes ONE PTE and then reaches a flush point
    (flush_page before INVLPG, mmu_flush before returning to user mode): the queue never holds
    two entries, so 2 mmu_update per iteration with batch 1 and with batch 8 alike.  The batch
    pays off only where the kernel writes many entries in a row: the boot identity map."""
    n1, n2 = 10, 30
    runs = {b: (pv_until_done(workload, n1, b)[0], pv_until_done(workload, n2, b)[0])
            for b in (1, 8)}
    for a, c in runs.values():
        assert ev(c, "paravirt:pte_updates") - ev(a, "paravirt:pte_updates") == 2 * (n2 - n1)
        assert ev(c, "hypercall:mmu_update") - ev(a, "hypercall:mmu_update") == 2 * (n2 - n1)
    for i in (0, 1):
        one, eight = runs[1][i], runs[8][i]
        # the same page-table updates whatever the batch ...
        assert ev(one, "paravirt:pte_updates") == ev(eight, "paravirt:pte_updates")
        # ... in fewer hypercalls with batch 8: at boot the 256 identity-map PTEs go in 256/8
        # hypercalls instead of 256 (kernel_pd's entry is flushed alone in both); every other
        # flush point up to `done` holds one entry
        saved = BOOT_MAP - BOOT_MAP // 8
        assert ev(one, "hypercall:mmu_update") - ev(eight, "hypercall:mmu_update") == saved
        assert ev(one, "hypercall:mmu_update") == ev(one, "paravirt:pte_updates")


def test_batch_size_cuts_mmu_update_hypercalls_in_forkwait():
    """fork writes one PTE per flush point (alloc_frame flushes before every allocation), but
    the child's exit tears its address space down with 4 queued writes (directory entry 1
    cleared, the table writable again, directory entry 0 cleared, the directory writable
    again), flushed together when the parent is switched back in.

    Per iteration: fork = 6 PTE writes (the child's directory read-only + its entry 0, the
    child's table read-only + directory entry 1, two PTEs for the image and stack pages), each
    flushed alone; exit = 4.  So 10 updates: 10 hypercalls with batch 1, 6 + 1 = 7 with batch 8.
    A timer interrupt taken in the kernel while entries are queued flushes them early
    (ret_kernel calls mmu_flush): that can add hypercalls with batch 8, never remove them.
    """
    n = 12
    one, _ = pv_until_done("forkwait", n, 1)
    eight, _ = pv_until_done("forkwait", n, 8)
    # up to `done`: boot (257 PTEs), init's creation (6), n iterations of 10
    pte = BOOT_MAP + 1 + 6 + 10 * n
    assert ev(one, "paravirt:pte_updates") == ev(eight, "paravirt:pte_updates") == pte
    assert ev(one, "hypercall:mmu_update") == pte
    least = BOOT_MAP // 8 + 1 + 6 + 7 * n
    # (each timer interrupt can split a queue at most once; not all of them land in the kernel)
    timer_interrupts = ev(eight, "reflect:timer_interrupt")
    assert least <= ev(eight, "hypercall:mmu_update") <= least + timer_interrupts
    # three address-space switches per iteration (to the child, to kernel_pd when it exits,
    # back to the parent); the child's directory and table are validated on its first load and
    # stop being page tables when its exit makes them writable again
    for r in (one, eight):
        assert ev(r, "hypercall:new_baseptr") == 2 + 3 * n
        assert ev(r, "paravirt:validate_table") == 4 + 2 * n
        assert ev(r, "paravirt:release_table") == 2 * n
        assert ev(r, "reflect:syscall") == 3 * n


def test_the_batch_size_is_reported_and_belongs_to_the_image():
    r, mon = pv("syscall", 10, 4)
    assert mon.batch == 4
    assert any("batch size 4" in note for note in r.notes)
    with pytest.raises(ValueError, match="property of the guest image"):
        Paravirt(build_guest("syscall", 10, paravirt=True), batch=4)


# ================================================================================================
# 3. resource control: small PARAVIRT guests that try to escape
# ================================================================================================
RAM = 0x10000           # 64 KiB guests
PROLOGUE = f"""
.org 0
        .word 0x4B53494D, 0, 0, {RAM}, 0, 0x2000, 0, 1   ; boot info: magic, RAM size, shared info
.org 0x1000
start:
        movi r14, 0
        ld   r13, [r14 + 16]        ; r13 = machine address of guest-physical 0 (boot info 4)
        ; page table at 0x4000: pages 0..15 at their machine addresses, writable, except the
        ; directory (page 3) and the table itself (page 4): read-only.  (entry, value) pairs:
        la   r1, pairs
        movi r3, 0
fill:
        shli r4, r3, 2
        add  r4, r4, r13
        li   r5, 0x4000
        add  r4, r4, r5
        st   r4, [r1]
        shli r5, r3, 12
        add  r5, r5, r13
        ori  r5, r5, 3
        movi r6, 3
        beq  r3, r6, table_ro
        movi r6, 4
        bne  r3, r6, table_rw
table_ro:
        xori r5, r5, 2
table_rw:
        st   r5, [r1 + 4]
        addi r1, r1, 8
        addi r3, r3, 1
        movi r6, 16
        bne  r3, r6, fill
        li   r4, 0x3000             ; directory entry 0 -> the table
        add  r4, r4, r13
        st   r4, [r1]
        li   r5, 0x4003
        add  r5, r5, r13
        st   r5, [r1 + 4]
        la   r1, pairs
        movi r2, 17
        vmcall 3                    ; mmu_update(pairs, 17) -> 17
        mov  r7, r0
        li   r1, 0x3000
        add  r1, r1, r13
        vmcall 4                    ; new_baseptr(directory): validated, pinned -> 0
        mov  r12, r0
"""
EPILOGUE = """
        movi r1, 0
        vmcall 15                   ; shutdown(0)
.org 0x5000
pairs:  .space 256
"""
MINUS_ONE = 0xFFFFFFFF
PATTERN = 0x5EC2E7A5


def pv_image(body: str, prologue: str = PROLOGUE, disk=None) -> ProgramImage:
    prog = assemble(prologue + body + EPILOGUE)
    image = ProgramImage.from_program(prog, ram_size=RAM, disk=disk,
                                      disk_sectors=0 if disk is None else len(disk) // 128)
    return dataclasses.replace(image, paravirt=True)


def contained_run(body: str, budget: int = 100_000, disk=None, **settings):
    """Run a small PV guest with a pattern in all host memory outside its RAM (but the monitor's
    boot page tables); returns (result, monitor, pattern intact)."""
    mon = Paravirt(pv_image(body, disk=disk), **settings)
    mon._boot()
    mem = mon.host.mem
    lo, hi = mon.boot_tables
    base, end = mon.layout.guest_base // 4, (mon.layout.guest_base + RAM) // 4
    outside = np.ones(mon.layout.host_size // 4, dtype=bool)
    outside[lo // 4:hi // 4] = False
    outside[base:end] = False
    mem[:len(outside)][outside] = PATTERN
    mon.ran = True
    mon._run(budget)
    intact = bool(np.all(mem[:len(outside)][outside] == PATTERN))
    return mon.result(), mon, intact


def test_the_small_guest_sets_up_its_tables():
    r, mon, intact = contained_run("")
    assert r.stop == "halt" and intact
    assert r.registers[7] == 17 and r.registers[12] == 0
    assert ev(r, "paravirt:pte_updates") == 17 and ev(r, "paravirt:validate_table") == 2
    assert int(mon.host.ctrl[C_PTBR]) == MONITOR_BYTES + 0x3000
    assert mon.check_invariants() == []


ESCAPES = """
        la   r1, pairs
        movi r2, 1
        li   r4, 0x4040             ; 1. entry 16 -> machine frame 0 (the monitor's region)
        add  r4, r4, r13
        st   r4, [r1]
        movi r5, 3
        st   r5, [r1 + 4]
        vmcall 3
        mov  r8, r0
        li   r5, 0x10003            ; 2. entry 16 -> the first frame after the guest's RAM
        add  r5, r5, r13
        st   r5, [r1 + 4]
        vmcall 3
        mov  r9, r0
        li   r4, 0x1000             ; 3. an entry address in the monitor's region
        st   r4, [r1]
        vmcall 3
        mov  r10, r0
        li   r4, 0x6000             ; 4. an entry address in an ordinary writable page
        add  r4, r4, r13
        st   r4, [r1]
        li   r5, 0x6003
        add  r5, r5, r13
        st   r5, [r1 + 4]
        vmcall 3
        mov  r11, r0
        li   r4, 0x4044             ; 5. entry 17 -> the page table itself, writable
        add  r4, r4, r13
        st   r4, [r1]
        li   r5, 0x4003
        add  r5, r5, r13
        st   r5, [r1 + 4]
        vmcall 3
        mov  r3, r0
        li   r1, 0x10000            ; the page that was never mapped: a page fault
        ld   r2, [r1]
"""


def test_mmu_update_outside_the_guest_or_outside_its_page_tables_is_refused():
    r, mon, intact = contained_run(ESCAPES)
    assert intact                                     # host memory outside the guest untouched
    assert [r.registers[k] for k in (8, 9, 10, 11, 3)] == [MINUS_ONE] * 5
    assert ev(r, "paravirt:refused_update") == 5
    table = mon.view().memory[0x4000 // 4:0x4000 // 4 + 18]
    assert table[16] == 0 and table[17] == 0          # nothing was written
    # the load from va 0x10000 faults (no handler registered: the run stops there)
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_PF
    assert mon.check_invariants() == []
    assert any("refused" in note and "not in the guest's memory" in note for note in r.notes)


def test_writing_a_page_table_directly_faults():
    body = """
        li   r1, 0x4000
        movi r2, 0x77
        st   r2, [r1]               ; the kernel's own page table: mapped read-only
"""
    r, mon, intact = contained_run(body)
    assert intact
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_PF
    assert r.stop_error == isa.PF_PRESENT | isa.PF_WRITE
    assert ev(r, "paravirt:pt_write_fault") == 1
    assert mon.view().memory[0x4000 // 4] == MONITOR_BYTES | 3     # entry 0 unchanged
    assert any("wrote its page table" in note for note in r.notes)


STALE_TLB = """
        li   r1, 0x6000
        st   r14, [r1]              ; the TLB now caches a WRITABLE translation of va 0x6000
        la   r1, pairs
        movi r2, 1
        li   r4, 0x4018             ; PTE 6 read-only (and, deliberately, no invlpg)
        add  r4, r4, r13
        st   r4, [r1]
        li   r5, 0x6001
        add  r5, r5, r13
        st   r5, [r1 + 4]
        vmcall 3
        mov  r8, r0
        li   r4, 0x3004             ; directory entry 1 -> frame 6: it becomes a page table
        add  r4, r4, r13
        st   r4, [r1]
        li   r5, 0x6003
        add  r5, r5, r13
        st   r5, [r1 + 4]
        vmcall 3
        mov  r9, r0
        li   r1, 0x6000             ; through the stale translation: PTE 0 of the new table ->
        movi r2, 3                  ; machine frame 0, the monitor's memory ...
        st   r2, [r1]
        li   r1, 0x00400000         ; ... and write there
        st   r1, [r1]
"""


def test_a_stale_writable_tlb_entry_cannot_write_a_new_page_table():
    """The guest forgets its INVLPG on purpose.  When frame 6 becomes a page table the monitor
    flushes the TLB, so the store through the old writable translation faults."""
    r, mon, intact = contained_run(STALE_TLB)
    assert intact
    assert r.registers[8] == 1 and r.registers[9] == 1
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_PF
    assert r.stop_error == isa.PF_PRESENT | isa.PF_WRITE
    assert mon.view().memory[0x6000 // 4] == 0        # the new table is still empty
    assert ev(r, "paravirt:pt_write_fault") == 1
    assert mon.check_invariants() == []


def test_new_baseptr_outside_the_guest_or_of_a_writable_page_is_refused():
    body = f"""
        li   r1, 0x1000             ; machine 0x1000: the monitor's region
        vmcall 4
        mov  r8, r0
        li   r1, {MONITOR_BYTES - 2 * PAGE}   ; the monitor's own boot directory
        vmcall 4
        mov  r9, r0
        li   r1, 0x10000            ; just past the guest's RAM
        add  r1, r1, r13
        vmcall 4
        mov  r10, r0
        li   r1, 0x6000             ; an ordinary writable page of the guest
        add  r1, r1, r13
        vmcall 4
        mov  r11, r0
        li   r1, 0x3000             ; the validated directory again: fine
        add  r1, r1, r13
        vmcall 4
        mov  r3, r0
"""
    r, mon, intact = contained_run(body)
    assert intact and r.stop == "halt"
    assert [r.registers[k] for k in (8, 9, 10, 11)] == [MINUS_ONE] * 4
    assert r.registers[3] == 0
    assert ev(r, "paravirt:refused_baseptr") == 4
    assert int(mon.host.ctrl[C_PTBR]) == MONITOR_BYTES + 0x3000
    assert mon.check_invariants() == []


def test_masking_events_and_spinning_cannot_starve_the_monitor():
    body = """
        li   r1, 0x2000
        movi r2, 1
        st   r2, [r1]               ; evtchn_upcall_mask = 1: a plain store, no trap
spin:   jmp  spin
"""
    r, mon, intact = contained_run(body, budget=100_000, time_slice=10_000)
    assert r.stop == "budget" and r.instructions == 100_000 and intact
    # the guest runs 10 000 ticks at a time, then the host timer brings the monitor back
    assert 8 <= ev(r, "monitor:preempt") <= 10
    assert ev(r, "reflect:timer_interrupt") == 0
    # with its virtual timer armed, the ticks stay pending while it masks them
    armed = body.replace("spin:", "        li   r1, 1000\n        vmcall 9\nspin:")
    r, mon, intact = contained_run(armed, budget=100_000, time_slice=10_000)
    assert r.stop == "budget" and intact
    assert ev(r, "timer:pending") >= 90 and ev(r, "reflect:timer_interrupt") == 0
    assert mon.view().architectural_state()["timer_pending"] == 1


def test_a_privileged_instruction_is_a_named_guest_fault():
    r, mon, intact = contained_run("        cli\n")
    assert intact and r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_GP
    assert ev(r, "paravirt:privileged_fault") == 1
    pc = r.pc
    assert any(f"privileged instruction CLI at 0x{pc:08x}: a paravirtual kernel must use "
               f"hypercalls" in note for note in r.notes)


def test_a_privileged_instruction_left_in_the_pv_kernel_is_named():
    # put the native console driver's `out console, r1` where the PV kernel has its hypercall
    image = build_guest("syscall", 1, paravirt=True)
    plain = kernel_program(False)
    out_word = plain.word_at(plain.symbols["kputc"])
    assert out_word >> 24 == isa.BY_MNEMONIC["OUT"].opcode
    kputc = image.symbol("kputc")
    image.ram[kputc // 4] = out_word
    r = run_technique(image, "paravirt", count=BUDGET)
    assert r.stop == "unhandled_trap" and r.pc == kputc and r.console == ""
    assert r.monitor_events["paravirt:privileged_fault"] == 1
    assert f"privileged instruction OUT at 0x{kputc:08x}" in " ".join(r.notes)


def test_bad_hypercalls_return_errors():
    body = """
        vmcall 99                   ; no such hypercall: -ENOSYS
        mov  r8, r0
        la   r1, pairs
        li   r2, 5000               ; too many pairs: -EINVAL
        vmcall 3
        mov  r9, r0
        li   r1, 0x00F00000         ; pairs at an unmapped address: -EFAULT
        movi r2, 1
        vmcall 3
        mov  r10, r0
"""
    r, _, intact = contained_run(body)
    assert intact and r.stop == "halt"
    assert [r.registers[k] for k in (8, 9, 10)] == [(-38) & MINUS_ONE, (-22) & MINUS_ONE,
                                                    (-14) & MINUS_ONE]
    assert ev(r, "hypercall:unknown_99") == 1


BLOCK_IO = """
        movi r1, 1                  ; read sector 1 into the ordinary page 0x6000: ok
        movi r2, 1
        li   r3, 0x6000
        add  r3, r3, r13
        vmcall 11
        mov  r8, r0
        movi r1, 1                  ; into the page table at 0x4000: refused (status 1)
        movi r2, 0
        li   r3, 0x4000
        add  r3, r3, r13
        vmcall 11
        mov  r9, r0
        movi r1, 1                  ; into the monitor's region: refused
        movi r2, 0
        li   r3, 0x1000
        vmcall 11
        mov  r10, r0
        movi r1, 1                  ; a sector beyond the disk
        movi r2, 2
        li   r3, 0x6000
        add  r3, r3, r13
        vmcall 11
        mov  r11, r0
        movi r1, 3                  ; no such command (status 2)
        vmcall 11
        mov  r3, r0
"""


def test_block_io_copies_only_between_the_disk_and_ordinary_guest_pages():
    disk = np.arange(256, dtype=np.uint32) + 0xD15C0000
    r, mon, intact = contained_run(BLOCK_IO, disk=disk)
    assert intact and r.stop == "halt"
    assert [r.registers[k] for k in (8, 9, 10, 11, 3)] == [0, 1, 1, 1, 2]
    memory = mon.view().memory
    assert np.array_equal(memory[0x6000 // 4:0x6000 // 4 + 128], disk[128:])
    assert memory[0x4000 // 4] == MONITOR_BYTES | 3          # the page table is untouched
    assert r.events["blk_reads"] == 1 and ev(r, "hypercall:block_io") == 5
    assert mon.check_invariants() == []


# ================================================================================================
# 4. bad input
# ================================================================================================
def test_a_plain_image_is_refused():
    with pytest.raises(MonitorError, match="runs a kernel built with PARAVIRT=1"):
        Paravirt(build_guest("syscall", 10))
    with pytest.raises(MonitorError, match="PARAVIRT=1"):
        run_technique(ProgramImage.from_program(assemble("start: hlt")), "paravirt")


def test_a_pv_image_without_boot_information_is_refused():
    image = dataclasses.replace(ProgramImage.from_program(assemble("start: hlt")),
                                paravirt=True)
    with pytest.raises(MonitorError, match="boot information"):
        Paravirt(image)


@pytest.mark.parametrize("settings,match", [
    ({"time_slice": 0}, "time_slice"), ({"time_slice": "10"}, "time_slice"),
    ({"time_slice": True}, "time_slice"), ({"guard_bytes": 100}, "guard_bytes"),
    ({"cpu": "nehalm"}, "did you mean 'nehalem'"),
    ({"batch": 8}, "build_guest"),
])
def test_bad_settings_are_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        Paravirt(build_guest("syscall", 10, paravirt=True), **settings)


def test_other_page_table_levels_are_refused_before_and_at_construction():
    """The PARAVIRT kernel is built for 2-level tables: a combination the class refuses, so a
    widget can ask it without building a guest, and the constructor says the same."""
    message = Paravirt.refusal("modern", levels=3)
    assert message is not None and "2-level" in message
    assert Paravirt.refusal("modern", levels=2) is None
    with pytest.raises(MonitorError, match="2-level"):
        Paravirt(build_guest("syscall", 10, paravirt=True), levels=3)


def test_registry_and_run_once():
    assert monitor_class("paravirt") is Paravirt
    mon = Paravirt(build_guest("syscall", 5, paravirt=True))
    with pytest.raises(ValueError):
        mon.run(0)
    mon.run(BUDGET)
    with pytest.raises(MonitorError, match="once"):
        mon.run(BUDGET)


def test_the_strict_isa_changes_nothing_for_the_pv_kernel():
    # the PV kernel has no sensitive instruction left (PUSHF/POPF became shared-info stores),
    # so making them trap cannot matter: the same state, the same events
    loose, _ = pv("forkwait", 5)
    strict = Paravirt(build_guest("forkwait", 5, paravirt=True), strict=True).run(BUDGET)
    assert strict.state_digest == loose.state_digest
    assert strict.monitor_events == loose.monitor_events
