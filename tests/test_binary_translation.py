"""binary_translation: equivalence with the bare machine on ANY ISA, golden tables, the cache.

* **Equivalence.**  Hundreds of generated guest kernels (``guest_programs.py``) run natively and
  under binary translation, on the strict *and* the non-strict ISA: the kernels that use
  PUSHF/POPF/GETCPL/RDTVB must match the bare machine too, which trap_emulate cannot do on the
  non-strict ISA.  The whole guest-visible state must be identical, including the tick counter
  (every translated word is one guest instruction; exit callouts are not).
* **Golden tables.**  Hand-written kernels and guest-OS workloads at two loop counts: every event
  is explained, and what one more iteration costs is exact.
* **The cache.**  Chaining, self-modifying code, adaptive retranslation, faults inside
  translated code, and the cache's protection from guest code (the data limit).
* **Resource control.**  trap_emulate's containment cases, under binary translation.
"""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import containment as cm
from guest_programs import RAM, guest_programs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim import isa
from kernel_sim.asm import assemble
from kernel_sim.costs import technique_costs
from kernel_sim.monitors import MonitorError, ProgramImage, run_technique
from kernel_sim.monitors.base import MONITOR_BYTES
from kernel_sim.monitors.binary_translation import BinaryTranslation
from kernel_sim.monitors.translator import CO_EXIT, TC_VA

EXAMPLES = int(os.environ.get("KERNEL_SIM_BT_EXAMPLES", "300"))
COST = technique_costs("modern")
EXIT = COST["monitor_entry"] + COST["monitor_return"]


def bt(img, **settings):
    return run_technique(img, "binary_translation", **settings)


# ==== equivalence ===============================================================================
def test_generated_kernels_leave_exactly_the_native_state_on_both_isas():
    seen: Counter = Counter()
    failures, stale = [], []
    count = [0]

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(guest_programs(), guest_programs(strict=True)))
    def check(program):
        img = program.image()
        count[0] += 1
        for strict in (False, True):
            native = run_technique(img, "native", count=program.budget, strict=strict)
            result = bt(img, count=program.budget, strict=strict)
            seen.update(result.monitor_events)
            if cm.same(native, result):
                continue
            # Shadow paging assumes the guest never depends on a stale TLB entry (see shadow.py);
            # a generated kernel that jumps back into its boot code rewrites live page-table
            # entries without INVLPG.  Such a program also diverges under trap_emulate on the
            # strict ISA, where nothing but shadow paging is involved: it is set aside.
            te = run_technique(img, "trap_emulate", count=program.budget, strict=True)
            if not cm.same(run_technique(img, "native", count=program.budget, strict=True), te):
                stale.append(program.source)
            else:
                failures.append((strict, program.source))

    check()
    assert not failures, f"{len(failures)} programs diverged; first (strict={failures[0][0]}):" \
                         f"\n{failures[0][1]}"
    assert len(stale) <= count[0] // 100, f"{len(stale)} of {count[0]} set aside"
    if EXAMPLES >= 300:
        expected = ["bt:translate", "bt:chain", "callout:exit", "callout:invalid_opcode",
                    "shadow:hidden_fault", "shadow:true_fault", "shadow:pt_write",
                    "shadow:root_new", "reflect:syscall", "reflect:timer_interrupt",
                    "reflect:general_protection", "reflect:divide_error", "timer:pending"]
        # every privileged and sensitive instruction went through a callout, on both ISAs
        expected += [f"callout:emulate:{m}" for m in (
            "cli", "sti", "in", "out", "hlt", "wrcr", "rdcr", "invlpg", "iret", "sysret",
            "pushf", "popf", "getcpl", "rdtvb")]
        missing = [name for name in expected if seen[name] == 0]
        assert not missing, f"the generated kernels never caused {missing}"
        # nothing here traps for a privileged instruction in the kernel
        assert not any(name.startswith("emulate:") for name in seen)


@pytest.mark.parametrize("workload", ["compute", "syscall", "io", "pgfault", "ptemod",
                                      "ctxswitch", "callret", "divzero", "forkwait", "preempt",
                                      "boot"])
@pytest.mark.parametrize("strict", [False, True])
def test_every_guest_os_workload_runs_unchanged(workload, strict):
    from kernel_sim.guest import build_guest
    img = build_guest(workload, count=5)
    native = run_technique(img, "native", strict=strict)
    result = bt(img, strict=strict)
    assert native.stop == "halt" and cm.same(native, result)
    assert result.user_digest == native.user_digest and result.notes == []


# ==== Popek & Goldberg: the non-strict ISA is no problem ========================================
SAVE_RESTORE_IF = """
        li   r1, 0x1000
        li   r2, tick
        st   r2, [r1 + 4 * 32]
        wrcr tvb, r1
        sti
        pushf                   ; save IF (= 1)
        cli
        addi r5, r5, 1          ; a critical section
        popf                    ; restore IF: a callout, emulated against the virtual CPU
        getcpl r9               ; 0, as on the bare machine
        rdtvb r10               ; the guest's own table
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


def test_non_strict_sensitive_instructions_are_translated_into_callouts():
    img = cm.image(SAVE_RESTORE_IF)
    native = run_technique(img, "native")
    result = bt(img)
    assert native.console == "TTTT" and cm.same(native, result)
    assert result.registers[9] == 0 and result.registers[10] == 0x1000
    ev = result.monitor_events
    assert ev["callout:emulate:pushf"] == ev["callout:emulate:popf"] == 1
    assert ev["callout:emulate:getcpl"] == ev["callout:emulate:rdtvb"] == 1
    assert result.notes == []
    # the same guest under trap_emulate on this ISA loses its interrupts (tests/test_trap_emulate)
    assert run_technique(img, "trap_emulate").console == ""


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
    img = cm.image(CLI_STI.format(K=k))
    r = bt(img)
    # Two blocks are translated: the one at the entry (movi, cli, sti, addi, bne, hlt: 6 guest
    # instructions; HLT ends a block) and, when the BNE first goes back, the one at `loop` (5).
    # Each BNE was translated before its target block existed, so it went to an exit stub: two
    # exits, each chaining its branch; after that the loop never leaves the cache.  Only CLI,
    # STI and the final HLT need the monitor -- as callouts, not traps.
    assert r.monitor_events == {"callout:emulate:cli": k, "callout:emulate:sti": k,
                                "callout:emulate:hlt": 1, "bt:translate": 2,
                                "callout:exit": 2, "bt:chain": 2}
    assert r.event_cycles["bt:translate"] == (6 + 5) * COST["translate"]
    assert r.event_cycles["callout:emulate:cli"] == k * (COST["callout"] + COST["emulate"])
    assert r.event_cycles["callout:exit"] == 2 * (COST["callout"] + COST["tc_lookup"])
    # no hardware trap at all: every transition is a callout
    assert r.cycles_by_category["transitions"] == (2 * k + 1 + 2) * COST["callout"]
    native = run_technique(img, "native")
    assert cm.same(native, r) and r.instructions == 1 + 4 * k + 1
    assert r.events["instructions"] == native.events["instructions"]


SYSCALLS = """
        li   r1, 0x1000             ; vector table
        li   r2, sys
        st   r2, [r1 + 4 * 0x80]
        wrcr tvb, r1                ; callout:emulate:wrcr 1 (ends block 1)
        li   r1, 0x8000
        wrcr ksp, r1                ; callout:emulate:wrcr 2 (ends block 2)
        li   r1, 0x9000             ; frame: user sp, flags, cpl 3, pc, error code
        push r1
        push r0
        movi r1, 3
        push r1
        li   r1, user
        push r1
        push r0
        sysret                      ; callout:emulate:sysret: into ring 3 (ends block 3)
sys:    movi r7, 0
        beq  r0, r7, exit           ; a stub until `exit` is translated
        movi r0, 42
        iret                        ; callout:emulate:iret, once per getpid (ends block 4)
exit:   hlt                         ; block 5
user:   movi r5, {K}
uloop:  movi r0, 2                  ; getpid
        syscall                     ; runs directly in ring 3: reflect:syscall
        addi r5, r5, -1
        bne  r5, r6, uloop
        movi r0, 0                  ; exit
        syscall
"""


@pytest.mark.parametrize("k", [3, 10])
def test_golden_system_calls(k):
    img = cm.image(SYSCALLS.format(K=k))
    mon = BinaryTranslation(img)
    r = mon.run()
    assert r.monitor_events == {"callout:emulate:wrcr": 2, "callout:emulate:sysret": 1,
                                "reflect:syscall": k + 1, "callout:emulate:iret": k,
                                "callout:emulate:hlt": 1, "bt:translate": 5,
                                "callout:exit": 1, "bt:chain": 1}
    # the user's system calls are real traps (user code runs directly): entry + return each
    assert r.event_cycles["reflect:syscall"] == (k + 1) * (EXIT + COST["reflect"])
    translated = sum(n for _, _, n in mon.translation_blocks())
    assert r.event_cycles["bt:translate"] == translated * COST["translate"]
    assert cm.same(run_technique(img, "native"), r)


def test_each_extra_user_system_call_costs_one_reflect_and_one_iret_callout():
    def events(k):
        return Counter(bt(cm.image(SYSCALLS.format(K=k))).monitor_events)
    diff = events(10) - events(3)
    assert diff == Counter({"reflect:syscall": 7, "callout:emulate:iret": 7})


def _diff(workload, low, high, **settings):
    from kernel_sim.guest import build_guest
    a = bt(build_guest(workload, count=low), **settings)
    b = bt(build_guest(workload, count=high), **settings)
    diff = Counter(b.monitor_events)
    diff.subtract(a.monitor_events)
    return a, b, {k: v for k, v in diff.items() if v}


def test_golden_callret_one_call_and_one_ret_callout_per_pair():
    from kernel_sim.guest import build_guest
    a, b, diff = _diff("callret", 20, 60)
    # kcall(n) runs n CALL/RET pairs in kernel code: each CALL and each RET is a callout (the
    # return address pushed must be the guest's, and a RET's target needs a cache lookup).
    # Everything else -- translations, chains, exits, traps -- is the same at both counts:
    # once warm, the loop never translates again.
    assert diff == {"callout:call": 40, "callout:ret": 40}
    assert b.event_cycles["callout:call"] - a.event_cycles["callout:call"] == \
        40 * (COST["callout"] + COST["tc_lookup"])
    assert cm.same(run_technique(build_guest("callret", count=60), "native"), b)


def test_golden_syscall_callouts_come_from_the_kernels_instructions():
    a, b, diff = _diff("syscall", 20, 40)
    per_call = {k: v / 20 for k, v in diff.items()}
    # the getpid path of guests/kernel.s (trap_syscall), in virtual ring 0, translated:
    #   irq_enable (STI); irq_save (PUSHF; CLI); irq_restore (POPF); CALLR to the handler and
    #   its RET; irq_disable (CLI); CALL prepare_user_return and its RET; SYSRET to user mode.
    # The `stat stat_syscalls` store writes kernel data on a page that also holds translated
    # code: after `adaptive_after` faults it was retranslated into a store callout.
    # The system call itself is a trap from user mode, reflected.
    expected = {"callout:emulate:sti": 1, "callout:emulate:pushf": 1,
                "callout:emulate:cli": 2, "callout:emulate:popf": 1, "callout:call": 2,
                "callout:ret": 2, "callout:emulate:sysret": 1, "callout:store": 1,
                "reflect:syscall": 1}
    for name, n in expected.items():
        assert per_call[name] == n, name
    # what else differs comes from timer interrupts landing in different places (a handful of
    # new blocks each: an interrupted block is re-entered in its middle), not from the loop
    extra = b.monitor_events.get("reflect:timer_interrupt", 0) - \
        a.monitor_events.get("reflect:timer_interrupt", 0)
    assert diff.get("bt:translate", 0) <= 8 * (extra + 1)


# ==== the cache ================================================================================
LOOP = """
        movi r3, {K}
loop:   addi r5, r5, 3
        xor  r6, r6, r5
        addi r3, r3, -1
        bne  r3, r0, loop
        hlt
"""


def test_a_kernel_loop_is_translated_once_and_its_back_edge_chained():
    events = {}
    for k in (10, 1000):
        r = bt(cm.image(LOOP.format(K=k)))
        assert cm.same(run_technique(cm.image(LOOP.format(K=k)), "native"), r)
        events[k] = r.monitor_events
    # independent of the iteration count: 2 translations, 2 exits that chain, 1 HLT
    assert events[10] == events[1000] == {"bt:translate": 2, "bt:chain": 2,
                                          "callout:exit": 2, "callout:emulate:hlt": 1}


def test_show_block_puts_the_chained_loop_beside_its_guest_code():
    prog = assemble(LOOP.format(K=10))
    mon = BinaryTranslation(ProgramImage.from_program(prog, ram_size=RAM))
    mon.run()
    loop = prog.labels["loop"]
    rows = mon.show_block(loop)
    assert [g for g, _ in rows[:4]] == [f"0x{loop + 4 * i:08x}" for i in range(4)]
    # the BNE (4th word) branches to the block's own first word: chained
    bne_at = int(rows[3][1].split()[0], 16)
    tc_words = {int(t.split()[0], 16): t for _, t in rows}
    block = [b for b in mon.translation_blocks() if b[0] == loop]
    assert len(block) == 1 and block[0][2] == 5          # addi xor addi bne hlt
    word = mon.tc.word_at(bne_at)
    assert bne_at + 4 + 4 * isa.sign16(word & 0xFFFF) == block[0][1]
    assert "callout" in tc_words[block[0][1] + 16]         # HLT is a callout
    with pytest.raises(ValueError):
        mon.show_block(3)


def test_self_modifying_kernel_code_gives_the_native_result():
    new = int(assemble("movi r5, 2").segments[0][1][0])
    source = f"""
        li   r1, target
        li   r2, {new}
        movi r6, 2
again:
target: movi r5, 1              ; translated on the first pass, rewritten before the second
        add  r7, r7, r5
        addi r6, r6, -1
        beq  r6, r0, done
        st   r2, [r1]           ; the page holds translated code: write-protected
        jmp  again
done:   hlt
"""
    img = cm.image(source)
    native = run_technique(img, "native")
    r = bt(img)
    assert native.registers[7] == 3 and cm.same(native, r)
    assert r.monitor_events["bt:code_write"] == 1
    assert r.monitor_events["bt:tc_invalidate"] == 1


def test_data_next_to_code_does_not_invalidate_and_stores_adapt():
    source = """
        li   r1, data
        movi r3, 10
loop:   st   r3, [r1]           ; kernel data on a page with translated code
        addi r3, r3, -1
        bne  r3, r0, loop
        hlt
data:   .word 0
"""
    img = cm.image(source)
    r = bt(img)
    assert cm.same(run_technique(img, "native"), r)
    ev = r.monitor_events
    # the first 3 stores fault (write-protected page) and are emulated; no translated word was
    # written, so nothing is invalidated; then the block is retranslated with a store callout
    assert ev["bt:code_write"] == 3 and "bt:tc_invalidate" not in ev
    assert ev["bt:adaptive_retranslation"] == 1 and ev["callout:store"] == 7


PT_LOOP = """
PD = 0x10000
PT0 = 0x11000
""" + cm.identity_map() + """        li   r1, PD
        li   r2, PT0 | 3
        st   r2, [r1]
        wrcr ptbr, r1
        movi r1, 1
        wrcr paging, r1
        li   r1, PT0 + 4 * 0x30     ; the entry of page 0x30000 (never used)
        movi r5, {K}
rewrite:
        ld   r2, [r1]
        addi r2, r2, 0
        st   r2, [r1]               ; a store to a write-protected guest page table
        addi r5, r5, -1
        bne  r5, r0, rewrite
        hlt
"""


@pytest.mark.parametrize("after", [3, 5])
def test_adaptive_retranslation_turns_page_table_faults_into_store_callouts(after):
    k = 12
    img = cm.image(PT_LOOP.format(RAM=RAM, K=k))
    r = bt(img, adaptive_after=after, unshadow_after=0)
    ev = r.monitor_events
    assert ev["shadow:pt_write"] == after
    assert ev["bt:adaptive_retranslation"] == 1 and ev["callout:store"] == k - after
    assert r.event_cycles["callout:store"] == (k - after) * (
        COST["callout"] + COST["shadow_pt_write"] + 2 * COST["walk_ref"])
    assert cm.same(run_technique(img, "native"), r)
    off = bt(img, adaptive_after=0, unshadow_after=0)
    assert off.monitor_events["shadow:pt_write"] == k and "callout:store" not in \
        off.monitor_events
    assert cm.same(off, r)
    assert r.cycles < off.cycles            # a callout is cheaper than a trap


def test_a_fault_in_translated_code_is_delivered_with_the_guests_pc():
    source = """
        li   r1, 0x1000
        li   r2, de
        st   r2, [r1]               ; #DE handler
        wrcr tvb, r1
        li   sp, 0x8000
        movi r3, 7
        movi r4, 0
        addi r3, r3, 1
here:   div  r5, r3, r4
        hlt
de:     ld   r9, [sp + 4]           ; the pc in the frame
        addi r8, r9, 4
        st   r8, [sp + 4]
        iret
"""
    prog = assemble(source)
    img = ProgramImage.from_program(prog, ram_size=RAM)
    r = bt(img)
    assert r.registers[9] == prog.labels["here"]          # a guest pc, not a TC address
    assert r.monitor_events["reflect:divide_error"] == 1
    assert cm.same(run_technique(img, "native"), r)


#: the fault-skipping prologue (containment.py) on a stack of its own, also summing the faults'
#: error codes in r11
SKIP_GP = cm.skip_gp(stack=0x8000, sum_error_codes=True)


def _tc_snapshot(mon):
    lo = mon.tc_base >> 2
    return mon.host.mem[lo:lo + (mon.tc_bytes >> 2)].copy()


def test_guest_kernel_cannot_read_or_write_the_translation_cache():
    source = SKIP_GP + f"""
        li   r1, {TC_VA}
        li   r2, 0xDEADBEEF
        st   r2, [r1]               ; the first translated word
        st   r2, [r1 + 4]
        ld   r3, [r1]
        hlt
"""
    img = cm.image(source)
    mon = BinaryTranslation(img)
    r = mon.run()
    assert r.registers[12] == 3 and r.registers[3] == 0
    assert r.traps["general_protection"] == 3
    words = _tc_snapshot(mon)
    assert not np.any(words == 0xDEADBEEF)
    # every translated block still says what the guest's code says
    for gpc, tc_start, n in mon.translation_blocks():
        for k, (g, _) in enumerate(mon.show_block(gpc)[:n]):
            word = mon.tc.word_at(tc_start + 4 * k)
            if word >> 24 != isa.OP_CALLOUT and word >> 24 not in (
                    isa.OP_BEQ, isa.OP_BNE, isa.OP_BLT, isa.OP_BGE, isa.OP_BLTU, isa.OP_BGEU,
                    isa.OP_JMP):
                assert word == int(mon.vcpu.ram[int(g, 16) >> 2]), g
    # with paging off an address beyond RAM is #GP(0) on the bare machine too
    assert cm.same(run_technique(img, "native"), r)


USER_ENTRY = """
        li   r1, 0x9000             ; frame: user sp, flags, cpl 3, pc, error code
        push r1
        push r0
        movi r1, 3
        push r1
        li   r1, user
        push r1
        push r0
        sysret
"""


def test_user_code_cannot_reach_the_cache_either():
    paging = f"""
{cm.identity_map(RAM, perms=7)}        li   r1, 0x10000
        li   r2, 0x11007
        st   r2, [r1]
        wrcr ptbr, r1
        movi r1, 1
        wrcr paging, r1
        li   r1, 0x7000
        wrcr ksp, r1
"""
    fetch = SKIP_GP + paging + USER_ENTRY + f"""
user:   li   r1, {TC_VA}
        jr   r1                     ; a fetch from the cache: the page is supervisor-only
"""
    # the user's fetch faults exactly as on the bare machine (the guest maps nothing there);
    # the #PF handler skips... to TC_VA + 4, which faults again, and so on: stop at a budget
    img = cm.image(fetch)
    native = run_technique(img, "native", count=3000)
    r = bt(img, count=3000)
    assert cm.same(native, r) and r.traps["page_fault"] > 10
    load = SKIP_GP + paging + USER_ENTRY + f"""
user:   li   r1, {TC_VA}
        ld   r2, [r1]               ; #GP: the data limit (the bare machine would give #PF)
        ld   r3, [r1 + 8]
        hlt                         ; privileged in ring 3: #GP
        movi r0, 0
        syscall
"""
    r = bt(cm.image(load), count=3000)
    # two loads and the HLT, skipped; the loads never happened (r2 still holds the last PDE
    # written at boot); the exit system call has no handler in this little kernel
    assert r.traps["general_protection"] == 3 and r.registers[2] == 0x11007
    assert r.stop == "unhandled_trap"


def test_user_code_sees_the_virtual_interrupt_flag_and_vector_table():
    # user code runs as itself in ring 3; on the non-strict ISA its PUSHF and RDTVB do not trap,
    # so the host's IF and TVB must be the virtual ones while it runs
    source = SKIP_GP + """
        li   r1, 0x9000             ; enter user mode with IF = 0
        push r1
        push r0
        movi r1, 3
        push r1
        li   r1, user
        push r1
        push r0
        iret
user:   pushf
        pop  r5                     ; 0: IF is off
        rdtvb r6                    ; 0x1000, the guest's table
        movi r1, 0x200
        push r1
        popf                        ; ignored in ring 3 (counted as popf_ignored)
        movi r4, 30000
spin:   addi r4, r4, -1             ; IF off: only the monitor's time slice gets it back
        bne  r4, r0, spin
        hlt                         ; #GP in ring 3, skipped
        movi r0, 0
        syscall                     ; no handler: the run stops
"""
    img = cm.image(source)
    native = run_technique(img, "native")
    r = bt(img, time_slice=5000)
    assert cm.same(native, r) and r.registers[5] == 0 and r.registers[6] == 0x1000
    assert r.events["popf_ignored"] == native.events["popf_ignored"] == 1
    assert r.monitor_events["monitor:preempt"] >= 60_000 // 5000 - 1


# ---- trap_emulate's containment cases --------------------------------------------------------
def run_contained(source: str, budget: int = 200_000, **settings):
    """Boot, paint everything the guest must not touch, run, check nothing changed.

    Painted: the frames of the monitor region the allocator has not handed out, besides the
    guard region (containment.py).  Then the cache's own mapping is checked in every shadow.
    """
    mon = BinaryTranslation(cm.image(source), **settings)
    mon._boot()
    mem = mon.host.mem
    with cm.paint_and_check(mon, sorted(mon.allocator.free_list),
                         containment=lambda: mon.pager.check_containment()):
        mon._run(budget)
        result = mon.result()
    # the cache's mapping: supervisor, read-only, the cache's own frames, in every shadow
    for sh in [mon.pager.phys, *mon.pager.shadows.values()]:
        root = int(mem[(sh.root >> 2) + (TC_VA >> 22)])
        assert root & isa.PTE_FRAME_MASK == mon.tc_table
        leaves = mem[mon.tc_table >> 2:(mon.tc_table >> 2) + 1024]
        for k in range(mon.tc_bytes // 4096):
            leaf = int(leaves[((TC_VA >> 12) & 0x3FF) + k])
            assert leaf & isa.PTE_FRAME_MASK == mon.tc_base + 4096 * k
            assert not leaf & (isa.PTE_W | isa.PTE_U)
    return mon, result


def test_guest_cannot_write_beyond_its_ram():
    source, faults = cm.write_beyond_ram([RAM, RAM + 4092, RAM + MONITOR_BYTES, -MONITOR_BYTES],
                                      handler=SKIP_GP)
    mon, r = run_contained(source)
    assert r.stop == "halt" and r.registers[12] == faults
    assert cm.same(run_technique(cm.image(source), "native"), r)


def test_guest_cannot_map_a_frame_beyond_its_ram():
    source, faults = cm.map_beyond_ram([RAM, RAM + MONITOR_BYTES],
                                    [("st", RAM), ("ld", RAM + 8), ("st", RAM + 4096)],
                                    handler=SKIP_GP)
    mon, r = run_contained(source)
    assert r.stop == "halt" and r.registers[12] == faults
    assert cm.same(run_technique(cm.image(source), "native"), r)


@pytest.mark.parametrize("what", ["shadow_root", "translation_cache"])
def test_guest_ptbr_naming_the_monitors_memory_reaches_only_guest_memory(what):
    probe = BinaryTranslation(cm.image("hlt"))
    probe._boot()
    # host addresses of the monitor's own things: a shadow root, the cache itself
    target = probe.pager.phys.root if what == "shadow_root" else probe.tc_base
    assert target < MONITOR_BYTES
    source = cm.ptbr_names_host_address(target, target, handler=SKIP_GP)
    mon, r = run_contained(source)
    assert cm.same(run_technique(cm.image(source), "native"), r)


def test_guest_that_disables_interrupts_and_spins_cannot_keep_the_monitor_out():
    source = """
        cli
spin:   jmp  spin
"""
    mon, r = run_contained(source, budget=300_000, time_slice=20_000)
    assert r.stop == "budget" and r.instructions == 300_000
    assert r.monitor_events["monitor:preempt"] >= 300_000 // 20_000 - 1
    # the spin loop is translated once and chained to itself: it runs from the cache, and
    # only the monitor's time slice brings the monitor back
    ev = r.monitor_events
    assert ev["bt:translate"] == 2 and ev["bt:chain"] == 2 and ev["callout:exit"] == 2


def test_the_translation_cache_refills_after_a_flush():
    from kernel_sim.guest import build_guest
    img = build_guest("forkwait", count=5)
    native = run_technique(img, "native")
    small = bt(img, tc_bytes=4096)
    assert cm.same(native, small) and small.monitor_events["bt:tc_flush"] > 1


# ==== settings and the CLI =====================================================================
def test_bad_settings_are_refused():
    img = cm.image("hlt")
    with pytest.raises(ValueError, match="tc_bytes"):
        BinaryTranslation(img, tc_bytes=1000)
    with pytest.raises(ValueError, match="tc_bytes"):
        BinaryTranslation(img, tc_bytes=256 * 1024)
    with pytest.raises(ValueError, match="adaptive_after"):
        BinaryTranslation(img, adaptive_after=-1)
    with pytest.raises(MonitorError, match="levels"):
        BinaryTranslation(img, levels=3)
    pv = ProgramImage(ram=img.ram, disk=img.disk, entry=0, ram_size=img.ram_size, paravirt=True)
    with pytest.raises(MonitorError, match="PARAVIRT"):
        BinaryTranslation(pv)


def test_translation_blocks_lists_guest_pcs_and_exit_stubs_are_not_instructions():
    mon = BinaryTranslation(cm.image(LOOP.format(K=3)))
    mon.run()
    blocks = mon.translation_blocks()
    assert [(g, n) for g, _, n in blocks] == [(0, 6), (4, 5)]
    for _, start, _ in blocks:
        assert TC_VA <= start < TC_VA + mon.tc_bytes
    kinds = {co.kind for co in mon.tc.callouts}
    assert CO_EXIT in kinds


def test_compare_cli_runs_binary_translation(capsys):
    from kernel_sim.__main__ import main
    code = main(["compare", "--workload", "syscall", "--count", "5", "--json",
                 "--techniques", "native,binary_translation"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and set(out) == {"native", "binary_translation"}
    assert out["binary_translation"]["user_digest"] == out["native"]["user_digest"]
