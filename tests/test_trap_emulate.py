"""trap_emulate: equivalence with the bare machine, golden event tables, resource control.

* **Equivalence.**  Hundreds of generated guest kernels (``guest_programs.py``) run natively and
  under trap-and-emulate with shadow paging on a strict machine; the whole guest-visible state
  (registers, control state, tick counter, all of guest memory including the accessed and dirty
  bits the MMU set, disk, console) must be identical, and the batch must have exercised every
  kind of monitor event.  Guests without sensitive instructions must also match on a
  non-strict machine.
* **Popek & Goldberg.**  On a non-strict machine a kernel that saves and restores the interrupt
  flag with ``pushf; cli; ...; popf`` loses its interrupts under the monitor, and the result says
  why.
* **Golden tables.**  Small hand-written kernels at two loop counts: every event is accounted
  for, and the difference between the two counts is exactly what one more iteration costs.
* **Resource control.**  Guests that try to reach memory outside their slice, or to keep the CPU
  with interrupts off, cannot.
"""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import containment as cm
from guest_programs import RAM, guest_programs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim.asm import assemble
from kernel_sim.costs import technique_costs
from kernel_sim.monitors import MonitorError, ProgramImage, run_technique
from kernel_sim.monitors.base import MONITOR_BYTES
from kernel_sim.monitors.trap_emulate import MONITOR_TVB, TrapEmulate

EXAMPLES = int(os.environ.get("KERNEL_SIM_TE_EXAMPLES", "300"))
COST = technique_costs("modern")
EXIT = COST["monitor_entry"] + COST["monitor_return"]


# ==== equivalence ===============================================================================
def test_generated_kernels_leave_exactly_the_native_state():
    seen: Counter = Counter()
    stops: Counter = Counter()
    failures = []

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(guest_programs(), guest_programs(strict=True)))
    def check(program):
        img = program.image()
        native = run_technique(img, "native", count=program.budget, strict=True)
        te = run_technique(img, "trap_emulate", count=program.budget, strict=True)
        stops[native.stop] += 1
        seen.update(te.monitor_events)
        if not cm.same(native, te):
            failures.append(program.source)
        if not program.strict:          # no sensitive instructions: non-strict must match too
            loose = run_technique(img, "trap_emulate", count=program.budget)
            if not cm.same(run_technique(img, "native", count=program.budget), loose):
                failures.append(program.source)

    check()
    assert not failures, f"{len(failures)} programs diverged; first:\n{failures[0]}"
    if EXAMPLES >= 300:
        # the batch must really have exercised the monitor, or the equality above means little
        expected = ["shadow:hidden_fault", "shadow:true_fault", "shadow:pt_write",
                    "shadow:root_new", "shadow:root_hit", "reflect:syscall",
                    "reflect:timer_interrupt", "reflect:general_protection",
                    "reflect:divide_error", "timer:pending"]
        expected += [f"emulate:{m}" for m in ("cli", "sti", "in", "out", "hlt", "wrcr", "rdcr",
                                              "invlpg", "iret", "sysret", "pushf", "popf",
                                              "getcpl", "rdtvb")]
        missing = [name for name in expected if seen[name] == 0]
        assert not missing, f"the generated kernels never caused {missing}"
        assert stops["halt"] > 50 and stops["budget"] > 20


# ==== Popek & Goldberg: the non-strict ISA =====================================================
SAVE_RESTORE_IF = """
        li   r1, 0x1000
        li   r2, tick
        st   r2, [r1 + 4 * 32]
        wrcr tvb, r1
        sti
        pushf                   ; save IF (= 1)
        cli
        addi r5, r5, 1          ; a critical section
        popf                    ; restore IF: in ring 1 this is silently ignored
        getcpl r9               ; 0 on the bare machine
        rdtvb r10               ; 0x1000 on the bare machine
        movi r1, 50
        out  timer, r1
        movi r3, 100
spin:   addi r3, r3, -1
        bne  r3, r0, spin
        cli
        hlt
tick:   movi r4, 'T'
        out  console, r4
        iret
"""


def test_non_strict_trap_emulate_diverges_on_pushf_cli_popf_and_says_why():
    img = cm.image(SAVE_RESTORE_IF)
    native = run_technique(img, "native")
    loose = run_technique(img, "trap_emulate")
    assert native.console == "TTTT" and native.registers[9] == 0
    assert native.registers[10] == 0x1000
    # the popf could not restore the virtual IF: the timer never interrupts the guest
    assert loose.console == "" and loose.state_digest != native.state_digest
    assert loose.registers[9] == 1                      # GETCPL reveals ring 1
    assert loose.registers[10] == MONITOR_TVB           # RDTVB reveals the monitor's table
    assert loose.monitor_events.get("emulate:popf", 0) == 0     # the monitor never saw it
    note = " ".join(loose.notes)
    assert "POPF x1" in note and "PUSHF x1" in note and "GETCPL x1" in note
    # the strict machine traps them and the monitor gets it right
    strict_native = run_technique(img, "native", strict=True)
    strict = run_technique(img, "trap_emulate", strict=True)
    assert cm.same(strict_native, strict) and strict.notes == []
    assert strict.monitor_events["emulate:popf"] == 1


# ==== golden event tables ======================================================================
CLI_STI = """
        movi r3, {K}
loop:   cli
        sti
        addi r3, r3, -1
        bne  r3, r0, loop
        hlt
"""


@pytest.mark.parametrize("k", [5, 12])
def test_golden_cli_sti_loop(k):
    r = run_technique(cm.image(CLI_STI.format(K=k)), "trap_emulate", strict=True)
    # each iteration: CLI and STI trap (2 emulations); ADDI and BNE run directly; the final HLT
    # traps once.  Paging is off: the physical-mode shadow is built at boot, so no page faults.
    assert r.monitor_events == {"emulate:cli": k, "emulate:sti": k, "emulate:hlt": 1}
    assert r.instructions == 1 + 4 * k + 1
    assert r.event_cycles["emulate:cli"] == k * (EXIT + COST["emulate"])
    assert r.cycles_by_category["transitions"] == (2 * k + 1) * EXIT


SYSCALLS = """
        li   r1, 0x1000             ; vector table
        li   r2, sys
        st   r2, [r1 + 4 * 0x80]
        wrcr tvb, r1                ; emulate:wrcr 1
        li   r1, 0x8000
        wrcr ksp, r1                ; emulate:wrcr 2
        li   r1, 0x9000             ; frame: user sp, flags, cpl 3, pc, error code
        push r1
        push r0
        movi r1, 3
        push r1
        li   r1, user
        push r1
        push r0
        sysret                      ; emulate:sysret: into ring 3
sys:    movi r7, 0
        beq  r0, r7, exit
        movi r0, 42
        iret                        ; emulate:iret, once per getpid
exit:   hlt                         ; emulate:hlt
user:   movi r5, {K}
uloop:  movi r0, 2                  ; getpid
        syscall                     ; reflect:syscall
        addi r5, r5, -1
        bne  r5, r6, uloop
        movi r0, 0                  ; exit
        syscall                     ; reflect:syscall
"""


@pytest.mark.parametrize("k", [3, 10])
def test_golden_system_calls(k):
    img = cm.image(SYSCALLS.format(K=k))
    r = run_technique(img, "trap_emulate", strict=True)
    assert r.monitor_events == {"emulate:wrcr": 2, "emulate:sysret": 1, "reflect:syscall": k + 1,
                                "emulate:iret": k, "emulate:hlt": 1}
    assert r.traps == {"syscall": k + 1} and r.registers[0] == 0
    assert r.event_cycles["reflect:syscall"] == (k + 1) * (EXIT + COST["reflect"])
    assert cm.same(run_technique(img, "native", strict=True), r)


def test_each_extra_user_system_call_costs_one_reflect_and_one_iret():
    def events(k):
        return Counter(run_technique(cm.image(SYSCALLS.format(K=k)), "trap_emulate").monitor_events)
    diff = events(10) - events(3)
    assert diff == Counter({"reflect:syscall": 7, "emulate:iret": 7})


TOUCH = """
PD = 0x10000
PT0 = 0x11000
""" + cm.identity_map() + """        li   r1, PD
        li   r2, PT0 | 3
        st   r2, [r1]
        wrcr ptbr, r1               ; emulate:wrcr (no shadow yet: paging is off)
        movi r1, 1
        wrcr paging, r1             ; emulate:wrcr + shadow:root_new
        movi r6, 3                  ; three rounds over the same pages
round:  li   r1, 0x20000
        movi r5, {N}
touch:  st   r5, [r1]               ; the first touch of each page is a write
        ld   r7, [r1 + 8]
        add  r1, r1, r4
        addi r5, r5, -1
        bne  r5, r0, touch
        addi r6, r6, -1
        bne  r6, r0, round
        hlt
"""


@pytest.mark.parametrize("n", [3, 7])
def test_golden_hidden_faults_equal_the_pages_touched(n):
    img = cm.image(TOUCH.format(N=n, RAM=RAM))
    r = run_technique(img, "trap_emulate", strict=True)
    # hidden faults: the code page once (first fetch after paging is on; it is only read, so a
    # read-only shadow entry is enough) and each data page once (its first access is a write, so
    # the walk sets D and the shadow entry is writable at once).  Rounds 2 and 3 hit the shadows.
    assert r.monitor_events == {"emulate:wrcr": 2, "shadow:root_new": 1,
                                "shadow:hidden_fault": 1 + n, "emulate:hlt": 1}
    # each hidden fault: one exit, one fill, and a two-level walk of the guest's tables
    assert r.event_cycles["shadow:hidden_fault"] == (1 + n) * (
        EXIT + COST["shadow_fill"] + 2 * COST["walk_ref"])
    native = run_technique(img, "native", strict=True)
    assert cm.same(native, r)                  # including the A and D bits in the guest's tables


ADDRESS_SPACES = """
PD_A = 0x10000
PD_B = 0x12000
PT0 = 0x11000
""" + cm.identity_map() + """        li   r2, PT0 | 3
        li   r1, PD_A
        st   r2, [r1]
        li   r1, PD_B
        st   r2, [r1]
        li   r1, PD_A | 1
        wrcr ptbr, r1
        movi r1, 1
        wrcr paging, r1             ; root_new (A)
        li   r8, PD_A | 1
        li   r9, PD_B | 2
        movi r5, {K}
again:  wrcr ptbr, r9               ; B: root_new the first time, then root_hit
        wrcr ptbr, r8               ; A: root_hit
        addi r5, r5, -1
        bne  r5, r0, again
        hlt
"""


def test_shadow_roots_are_cached_per_guest_ptbr():
    k = 4
    r = run_technique(cm.image(ADDRESS_SPACES.format(RAM=RAM, K=k)), "trap_emulate")
    ev = r.monitor_events
    assert ev["shadow:root_new"] == 2 and ev["shadow:root_hit"] == 2 * k - 1
    # code page: one hidden fault in each address space (they share the guest's tables but
    # each shadow is filled on its own)
    assert ev["shadow:hidden_fault"] == 2
    assert cm.same(run_technique(cm.image(ADDRESS_SPACES.format(RAM=RAM, K=k)), "native"), r)


# ==== resource control =========================================================================
def run_contained(source: str, budget: int = 200_000, **settings):
    """Boot, paint everything the guest must not touch, run, and check nothing changed.

    Painted: the frames of the monitor region the allocator has not handed out, and the
    monitor's own vector table (MONITOR_TVB), besides the guard region (containment.py).
    """
    mon = TrapEmulate(cm.image(source), strict=True, **settings)
    mon._boot()
    painted = sorted(mon.allocator.free_list) + [MONITOR_TVB]
    with cm.paint_and_check(mon, painted, containment=lambda: mon.pager.check_containment()):
        mon._run(budget)
        result = mon.result()
    return mon, result


def test_guest_cannot_write_beyond_its_ram_with_paging_off():
    source, faults = cm.write_beyond_ram([
        RAM,                        # first word after the guest's RAM: host guard page
        RAM + 4092,
        RAM + MONITOR_BYTES,
        0xFFFFFFF0,
        -MONITOR_BYTES,             # wraps to the top of the address space
    ])
    mon, r = run_contained(source)
    assert r.stop == "halt" and r.registers[12] == faults
    assert r.traps["general_protection"] == faults
    assert cm.same(run_technique(cm.image(source), "native", strict=True), r)


def test_guest_cannot_map_a_frame_beyond_its_ram():
    # the frame right after the RAM (the host's guard page) and one a monitor region further
    source, faults = cm.map_beyond_ram([RAM, RAM + MONITOR_BYTES],
                                    [("st", RAM), ("ld", RAM + 8), ("st", RAM + 4096)])
    mon, r = run_contained(source)
    assert r.stop == "halt" and r.registers[12] == faults
    assert r.traps["general_protection"] == faults
    assert cm.same(run_technique(cm.image(source), "native", strict=True), r)


def test_guest_ptbr_naming_the_monitors_tables_reaches_only_guest_memory():
    probe = TrapEmulate(cm.image("hlt"))
    probe._boot()
    root = probe.pager.phys.root            # host address of the monitor's shadow root
    assert root < MONITOR_BYTES
    source = cm.ptbr_names_host_address(root, MONITOR_TVB)
    mon, r = run_contained(source)
    native = run_technique(cm.image(source), "native", strict=True)
    assert cm.same(native, r)
    assert r.stop == native.stop


def test_guest_that_disables_interrupts_and_spins_cannot_keep_the_monitor_out():
    source = """
        cli
spin:   jmp  spin
"""
    mon, r = run_contained(source, budget=300_000, time_slice=20_000)
    assert r.stop == "budget" and r.instructions == 300_000
    assert r.monitor_events["monitor:preempt"] >= 300_000 // 20_000 - 1
    assert r.cycles_by_category["transitions"] == (1 + r.monitor_events["monitor:preempt"]) * EXIT


# ==== settings ==================================================================================
def test_bad_settings_are_refused():
    img = cm.image("hlt")
    with pytest.raises(ValueError, match="time_slice"):
        TrapEmulate(img, time_slice=0)
    with pytest.raises(ValueError, match="guard_bytes"):
        TrapEmulate(img, guard_bytes=100)
    with pytest.raises(ValueError, match="max_roots"):
        TrapEmulate(img, max_roots=5000)
    pv = ProgramImage(ram=img.ram, disk=img.disk, entry=0, ram_size=img.ram_size, paravirt=True)
    with pytest.raises(MonitorError, match="PARAVIRT"):
        TrapEmulate(pv)


def test_block_device_and_timer_are_virtual():
    source = """
        li   r1, 0x1000
        li   r2, tick
        st   r2, [r1 + 4 * 32]
        wrcr tvb, r1
        movi r1, 1
        out  blk_sector, r1
        li   r1, 0x3000
        out  blk_buffer, r1
        movi r1, 1
        out  blk_command, r1       ; DMA sector 1 -> guest-physical 0x3000
        in   r5, blk_command
        in   r6, blk_size
        li   r1, 0x3000
        ld   r7, [r1 + 4]
        movi r1, 2
        out  blk_sector, r1
        out  blk_command, r1       ; 2: write the same buffer to sector 2
        movi r1, 30
        out  timer, r1
        sti
        hlt                         ; sleeps until the timer
        cli
        hlt
tick:   in   r8, ticks
        iret
"""
    disk = np.arange(4 * 128, dtype=np.uint32)
    img = ProgramImage.from_program(assemble(source), ram_size=RAM, disk_sectors=4, disk=disk)
    native = run_technique(img, "native", strict=True)
    te = run_technique(img, "trap_emulate", strict=True)
    assert cm.same(native, te) and te.registers[7] == 129 and te.registers[6] == 4
    assert te.events["blk_reads"] == 1 and te.events["blk_writes"] == 1
    assert te.events["idle_ticks"] == native.events["idle_ticks"] > 0
    # 6 OUTs and 3 INs, each one device access; two sectors moved
    assert te.cycles_by_category["devices"] == 9 * COST["device_io"] + 2 * COST["blk_sector"]


SHARED_TABLE = """
PD_A = 0x10000
PD_B = 0x12000
PT0 = 0x11000
PTX = 0x13000                       ; maps VA 0x400000.. in both address spaces
""" + cm.identity_map() + """        li   r2, PT0 | 3
        li   r3, PTX | 3
        li   r1, PD_A
        st   r2, [r1]
        st   r3, [r1 + 4]
        li   r1, PD_B
        st   r2, [r1]
        st   r3, [r1 + 4]
        li   r1, PTX
        li   r2, 0x20003
        st   r2, [r1]               ; VA 0x400000 -> frame 0x20000 (holds 111)
        li   r1, 0x20000
        movi r2, 111
        st   r2, [r1]
        li   r1, 0x21000
        movi r2, 222
        st   r2, [r1]               ; frame 0x21000 holds 222
        li   r8, PD_A               ; ASID 0: untagged, every switch flushes the TLB
        li   r9, PD_B
        wrcr ptbr, r8
        movi r1, 1
        wrcr paging, r1
        li   r7, 0x400000
        ld   r5, [r7]               ; A: 111 (A's shadow now maps the page)
        wrcr ptbr, r9
        ld   r5, [r7]               ; B: 111 (B's shadow too)
        wrcr ptbr, r8
        li   r1, PTX
        li   r2, 0x21003
        st   r2, [r1]               ; remap in A: a write to a shadowed guest page table
        invlpg r7
        ld   r5, [r7]               ; A: 222
        wrcr ptbr, r9
        ld   r6, [r7]               ; B: 222 -- B's cached shadow entry was dropped as well
        hlt
"""


def test_a_page_table_write_invalidates_the_entry_in_every_cached_shadow():
    img = cm.image(SHARED_TABLE.format(RAM=RAM))
    r = run_technique(img, "trap_emulate", strict=True)
    assert r.registers[5] == 222 and r.registers[6] == 222
    assert r.monitor_events["shadow:pt_write"] == 1
    assert r.monitor_events["shadow:root_new"] == 2 and r.monitor_events["shadow:root_hit"] == 2
    assert cm.same(run_technique(img, "native", strict=True), r)


@pytest.mark.parametrize("workload", ["syscall", "pgfault", "ptemod", "ctxswitch", "io",
                                      "forkwait", "boot"])
def test_the_course_guest_os_runs_unchanged(workload):
    from kernel_sim.guest import build_guest
    img = build_guest(workload)
    native = run_technique(img, "native", strict=True)
    te = run_technique(img, "trap_emulate", strict=True)
    assert native.stop == "halt" and cm.same(native, te)
    assert te.user_digest == native.user_digest


def test_evicted_and_flushed_shadows_are_rebuilt_without_the_guest_noticing():
    from kernel_sim.guest import build_guest
    img = build_guest("forkwait")
    native = run_technique(img, "native", strict=True)
    # one cached root: every address-space switch builds a shadow from scratch
    evicting = run_technique(img, "trap_emulate", strict=True, max_roots=1)
    assert cm.same(native, evicting) and "shadow:root_hit" not in evicting.monitor_events
    # a monitor region with only a few free frames: shadows are dropped wholesale and rebuilt
    mon = TrapEmulate(img, strict=True)
    mon._boot()
    del mon.allocator.free_list[:-6]
    mon._run(10 ** 8)
    starved = mon.result()
    assert cm.same(native, starved) and starved.monitor_events["shadow:flush_all"] > 10
    assert mon.pager.check_containment() == []


def test_write_flooded_page_tables_are_unshadowed():
    # fork copies pages into frames that held page tables of processes that have exited; while
    # a cached shadow still mirrors such a frame, every word copied into it traps
    from kernel_sim.guest import build_guest
    img = build_guest("forkwait")
    native = run_technique(img, "native", strict=True)
    always = run_technique(img, "trap_emulate", strict=True, unshadow_after=0)
    flooded = run_technique(img, "trap_emulate", strict=True, unshadow_after=16)
    assert cm.same(native, always) and cm.same(native, flooded)
    assert "shadow:unshadow" not in always.monitor_events
    assert flooded.monitor_events["shadow:unshadow"] > 0
    assert flooded.monitor_events["shadow:pt_write"] * 10 < always.monitor_events["shadow:pt_write"]
