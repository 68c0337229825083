"""The ``emulation`` technique: a soft CPU that must leave exactly the bare machine's state.

1. Differential: random machines from test_differential's generator, run by the jitted hardware
   CPU and by the emulator in both modes; registers, control state, guest memory, disk, console,
   the TLB (architecturally visible, stale entries included), every guest event counter and the
   stop reason must agree.
2. Self-modifying code in translate mode.
3. Golden counts for small programs, reasoned from the mechanism.
4. Resource control: nothing outside the guest's slice of host memory changes.
5. Bad settings are refused with clear messages.  6. A runaway guest stops at its budget.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_differential import CODE, build_reference, cases, differences, run_jitted

from kernel_sim import isa
from kernel_sim import state as S
from kernel_sim.asm import assemble
from kernel_sim.costs import technique_costs
from kernel_sim.monitors import ProgramImage, available_techniques, run_technique
from kernel_sim.monitors import emulation_kernel as K
from kernel_sim.monitors.base import MONITOR_BYTES
from kernel_sim.monitors.emulation import Emulation

EXAMPLES = int(os.environ.get("KERNEL_SIM_EMU_EXAMPLES", "320"))
MODES = ("interpret", "translate")
COST = technique_costs("modern")


def image(source, ram_size=64 << 10, **kw):
    return ProgramImage.from_program(assemble(source), ram_size=ram_size, **kw)


def both(source, count=100_000, **settings_):
    """Native result and the emulator's result in each mode, for one program."""
    img = image(source)
    native = run_technique(img, "native", count, **settings_)
    return native, {m: run_technique(img, "emulation", count, mode=m, **settings_)
                    for m in MODES}


# ================================================================================================
# 1. differential against the hardware CPU
# ================================================================================================
def run_emulator(case, initial, mode):
    """Boot an Emulation on the case's memory and disk, load its initial state, run it."""
    words = case.memory_size // 4
    img = ProgramImage(ram=initial["mem"][:words].copy(), disk=initial["mem"][words:].copy(),
                       entry=CODE, ram_size=case.memory_size, disk_sectors=case.disk_sectors)
    mon = Emulation(img, mode=mode, levels=case.levels, tlb_size=case.tlb_size,
                    strict=case.strict, console_size=case.console_size)
    mon._boot()
    mon.host_mem[:MONITOR_BYTES // 4] = 0xA5A5A5A5          # the monitor's region: a pattern
    mon.regs[:] = initial["regs"]
    mon.vcpu[:] = initial["ctrl"]
    mon.tlb[:] = initial["tlb"]
    mon.ran = True
    mon._run(case.budget)
    return mon


def emulator_state(mon, native):
    """The emulator's state in the hardware layout (trace and cycles are not emulated)."""
    ctrl = mon.vcpu.copy()
    for index in (S.C_CYCLES, S.C_TRACE_POS):
        ctrl[index] = native["ctrl"][index]
    return dict(regs=mon.regs, ctrl=ctrl, tlb=mon.tlb, counters=mon.counters,
                mem=np.concatenate([mon.gmem, mon.disk]), console=mon.console,
                trace=native["trace"])


def test_exactly_the_innocuous_instructions_go_into_translated_blocks():
    # (the kernel's constants are isa's and state's own: tests/test_jit.py)
    assert {op for op in range(256) if K.translatable(op)} == {
        i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.INNOCUOUS}


@pytest.mark.slow
def test_emulator_leaves_exactly_the_native_state_on_random_programs():
    seen = {"programs": 0, "stops": set(), "translations": 0, "interpreted_in_tb_mode": 0,
            "opcodes": set()}

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases().filter(lambda c: not c.intercept and c.until is None))
    def check(case):
        initial = build_reference(case).export()
        reason, native = run_jitted(case, initial)
        seen["programs"] += 1
        seen["stops"].add(reason)
        for mode in MODES:
            mon = run_emulator(case, initial, mode)
            diffs = differences(native, emulator_state(mon, native))
            got = int(mon.vcpu[S.C_STOP_REASON])
            if got != reason:
                diffs.insert(0, f"stop: native {S.STOP_NAMES[reason]}, emulator "
                                f"{S.STOP_NAMES[got]}")
            if np.any(mon.host_mem[:MONITOR_BYTES // 4] != 0xA5A5A5A5):
                diffs.append("the monitor's region of host memory changed")
            emu = mon.emu
            if emu[K.E_INTERPRETED] + emu[K.E_TB_EXECUTED] != mon.counters[S.EV_INSTRUCTIONS]:
                diffs.append("interpreted + tb_executed != guest instructions")
            assert not diffs, (f"{mode} emulator differs from the native CPU:\n  "
                               + "\n  ".join(diffs))
            if mode == "translate":
                seen["translations"] += int(emu[K.E_TRANSLATIONS])
                seen["interpreted_in_tb_mode"] += int(emu[K.E_INTERPRETED])
                seen["opcodes"] |= {op for op in range(256)
                                    if mon.counters[S.EV_OP_BASE + op]}

    check()
    assert seen["programs"] >= min(EXAMPLES, 300)
    if EXAMPLES >= 300:
        # the batch exercised the machine (the generator's own coverage check, in short)
        assert {S.STOP_BUDGET, S.STOP_HALT, S.STOP_UNHANDLED_TRAP,
                S.STOP_TRIPLE_FAULT} <= seen["stops"]
        # every opcode retired, but for at most two rare ones a batch of a few hundred random
        # programs can miss by chance (as in tests/test_differential.py's coverage check)
        missing = {i.mnemonic for i in isa.MACHINE_INSTRUCTIONS} - {
            isa.BY_OPCODE[op].mnemonic for op in seen["opcodes"] if op in isa.BY_OPCODE}
        assert len(missing) <= 2, f"the batch never retired {sorted(missing)}"
        assert seen["translations"] > 0 and seen["interpreted_in_tb_mode"] > 0


# ================================================================================================
# 2. self-modifying code
# ================================================================================================
SMC = """
start:
    movi r8, next
    movi r7, patch
    ld   r9, [r7]
    st   r9, [r8]        ; overwrite the instruction right after this one
next:
    movi r3, 1           ; replaced by "movi r3, 2" before it runs
    hlt
patch:
    movi r3, 2           ; an instruction word, used as data
"""


def test_self_modifying_code_runs_the_new_instruction_and_invalidates_the_block():
    native, emu = both(SMC)
    assert native.registers[3] == 2
    for mode, r in emu.items():
        assert r.state_digest == native.state_digest, mode
        assert r.registers[3] == 2, mode
    ev = emu["translate"].monitor_events
    # one block [movi, movi, ld, st, movi r3,1] was translated from page 0 (it stops before
    # the HLT); the store hit that page: that block is invalidated and left after the store.
    # Then a new block is translated at `next` from the new bytes: [movi r3, 2].
    assert ev["emulation:tb_invalidations"] == 1
    assert ev["emulation:translations"] == 2
    assert ev["emulation:translated_insns"] == 5 + 1
    assert ev["emulation:tb_executed"] == 5 and ev["emulation:interpreted"] == 1


E = isa.encode
SMC_ALU = st.sampled_from([isa.OP_ADD, isa.OP_SUB, isa.OP_XOR, isa.OP_MUL, isa.OP_SLTU])
SMC_IMM = st.sampled_from([isa.OP_ADDI, isa.OP_XORI, isa.OP_SHLI, isa.OP_MOVI])
R16 = st.integers(1, 6)


@st.composite
def alu_word(draw):
    """An instruction a patched slot may hold: ALU work on r1..r6, or a jump to the next slot
    (a control transfer, so patching it in or out changes where blocks end)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return isa.encode_j(isa.OP_JMP, 0)
    if kind < 5:
        return E(draw(SMC_ALU), draw(R16), draw(R16), draw(R16))
    return E(draw(SMC_IMM), draw(R16), draw(R16), draw(st.integers(0, 0xFFFF)))


@st.composite
def self_modifying_programs(draw):
    """A loop whose body patches its own ALU slots (earlier, later, the running block, the next
    page) with words from a table; the body straddles a page boundary."""
    length = draw(st.integers(4, 40))
    body = []
    for n in range(length):
        if n >= 1 and draw(st.integers(0, 3)) == 0:
            body += [("ld", draw(st.integers(0, 7))), ("st", None)]
        else:
            body.append(("alu", draw(alu_word())))
    patchable = [n for n, (kind, _) in enumerate(body) if kind == "alu"]
    body = [(kind, draw(st.sampled_from(patchable)) if kind == "st" else value)
            for kind, value in body]
    start = 0x1000 - 4 * draw(st.integers(4, 4 + len(body)))     # the body crosses 0x1000
    table = 0x4000
    body_at = start + 4 * 4
    words = [E(isa.OP_MOVI, 10, 0, table), E(isa.OP_MOVI, 11, 0, body_at),
             E(isa.OP_MOVI, 12, 0, 0), E(isa.OP_MOVI, 13, 0, draw(st.integers(1, 6)))]
    for kind, value in body:
        words.append(value if kind == "alu" else
                     E(isa.OP_LD, 7, 10, 4 * value) if kind == "ld" else
                     E(isa.OP_ST, 7, 11, 4 * value))
    words += [E(isa.OP_ADDI, 12, 12, 1), E(isa.OP_BNE, 12, 13, (-len(body) - 2) & 0xFFFF),
              E(isa.OP_HLT)]
    ram = np.zeros((64 << 10) // 4, dtype=np.uint32)
    ram[start // 4:start // 4 + len(words)] = words
    ram[table // 4:table // 4 + 8] = [draw(alu_word()) for _ in range(8)]
    ram[1:7] = [draw(st.integers(0, 0xFFFFFFFF)) for _ in range(6)]
    regs_init = [E(isa.OP_LD, r, 0, 4 * r) for r in range(1, 7)]   # r1..r6 from words 1..6
    ram[0x800 // 4:0x800 // 4 + 7] = regs_init + [isa.encode_j(isa.OP_JMP, (start - 0x81C) // 4)]
    return ProgramImage(ram=ram, disk=np.zeros(0, dtype=np.uint32), entry=0x800,
                        ram_size=64 << 10)


@pytest.mark.slow
def test_self_modifying_loops_match_native_in_every_mode():
    invalidations = []

    @settings(max_examples=120, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(img=self_modifying_programs())
    def check(img):
        native = run_technique(img, "native", 5000)
        for mode, size in (("interpret", K.MAX_BLOCK), ("translate", 1 << 16),
                           ("translate", K.MAX_BLOCK)):
            r = run_technique(img, "emulation", 5000, mode=mode, cache_size=size)
            assert (r.stop, r.registers, r.events) == (native.stop, native.registers,
                                                         native.events), (mode, size)
            assert r.state_digest == native.state_digest
            invalidations.append(r.monitor_events.get("emulation:tb_invalidations", 0))

    check()
    assert sum(invalidations) > 100


LOOP_SMC = """
start:
    movi r6, 0
    movi r7, 2
again:
    movi r3, 1           ; the second pass finds "movi r3, 2" here
    add  r4, r4, r3
    addi r6, r6, 1
    movi r8, patch
    ld   r9, [r8]
    movi r8, again
    st   r9, [r8]
    bne  r6, r7, again
    hlt
patch:
    movi r3, 2
"""


def test_a_loop_that_patches_its_own_head_sees_the_patch_on_the_next_pass():
    native, emu = both(LOOP_SMC)
    assert native.registers[4] == 3                   # 1 on the first pass + 2 on the second
    for mode, r in emu.items():
        assert r.state_digest == native.state_digest, mode
    assert emu["translate"].monitor_events["emulation:tb_invalidations"] >= 2


@pytest.mark.parametrize("workload, count", [("boot", 5), ("forkwait", 3), ("ptemod", 5),
                                             ("preempt", 2)])
def test_the_course_guest_os_runs_exactly_as_on_the_bare_machine(workload, count):
    from kernel_sim.guest import build_guest
    img = build_guest(workload, count=count)
    native = run_technique(img, "native", 3_000_000)
    assert native.stop == "halt"
    for mode in MODES:
        r = run_technique(img, "emulation", 3_000_000, mode=mode)
        assert (r.stop, r.console, r.events, r.traps) == (native.stop, native.console,
                                                          native.events, native.traps)
        assert r.state_digest == native.state_digest and r.user_digest == native.user_digest
        ev = r.monitor_events
        assert ev.get("emulation:interpreted", 0) + ev.get("emulation:tb_executed", 0) \
            == native.instructions


# ================================================================================================
# 3. golden counts
# ================================================================================================
def loop_source(k, n):
    """K iterations of a loop body of N instructions (N - 2 fillers, a counter and a branch)."""
    body = "\n".join("    addi r3, r3, 1" for _ in range(n - 2))
    return f"""
start:
    movi r1, 0
    movi r2, {k}
    jmp  loop
loop:
{body}
    addi r1, r1, 1
    bne  r1, r2, loop
    hlt
"""


@pytest.mark.parametrize("k, n", [(50, 4), (7, 20)])
def test_loop_golden_counts(k, n):
    native, emu = both(loop_source(k, n))
    instructions = 3 + k * n + 1
    assert native.instructions == instructions
    inter = emu["interpret"]
    assert inter.instructions == instructions
    assert inter.monitor_events == {"emulation:interpreted": instructions}
    assert inter.cycles_by_category["emulation"] == instructions * COST["emu_dispatch"]
    tr = emu["translate"]
    # blocks: [movi, movi, jmp] entered once and the loop body entered k times, each translated
    # once; HLT is privileged: interpreted
    assert tr.monitor_events == {
        "emulation:translations": 2, "emulation:translated_insns": 3 + n,
        "emulation:tb_enter": 1 + k, "emulation:block_cache_hits": k - 1,
        "emulation:tb_executed": 3 + k * n, "emulation:interpreted": 1}
    assert tr.cycles_by_category["emulation"] == (
        (3 + n) * COST["emu_translate"] + (1 + k) * COST["emu_tb_enter"]
        + (3 + k * n) * COST["emu_tb_insn"] + COST["emu_dispatch"])
    assert tr.cycles == tr.cycles_by_category["emulation"]      # no native cycles at all
    for r in emu.values():
        assert r.state_digest == native.state_digest


PAGED_LOOP = """
start:
    movi r1, 0x3000      ; a one-level page table at 0x3000
    wrcr ptbr, r1
    movi r1, 1
    wrcr paging, r1      ; paging on: the TLB starts empty
    movi r2, 0
    movi r3, {k}
    movi r4, 0x2000      ; the data page
loop:
    ld   r5, [r4]
    addi r2, r2, 1
    bne  r2, r3, loop
    hlt
.org 0x3000
    .word 0x0007         ; page 0 -> frame 0, present, writable, user
    .word 0x1007
    .word 0x2007
"""


def test_soft_tlb_counts_what_the_hardware_tlb_counts():
    k = 40
    native, emu = both(PAGED_LOOP.format(k=k), levels=1)
    # after paging is on: 3 + 3k + 1 fetches from page 0 (the first misses) and k loads from
    # page 2 (the first misses): hits = (3 + 3k) + (k - 1), misses = 2
    assert native.events["tlb_hits"] == 4 * k + 2 and native.events["tlb_misses"] == 2
    for mode, r in emu.items():
        assert r.state_digest == native.state_digest, mode
        assert r.monitor_events["emulation:soft_tlb_hits"] == 4 * k + 2
        assert r.monitor_events["emulation:soft_tlb_misses"] == 2
        assert r.events == native.events and r.traps == native.traps
        assert r.cycles_by_category["memory"] == (
            (4 * k + 2) * COST["emu_soft_tlb_hit"] + 2 * COST["emu_soft_tlb_miss"])


def test_each_port_access_is_one_device_emulation():
    src = """
        movi r1, 'o'
        out  console, r1
        out  console, r1
        movi r1, 5
        out  timer, r1
        in   r2, ticks
        in   r2, 0x99        ; no device: reads all ones, still an emulated access
        hlt
    """
    native, emu = both(src)
    for r in emu.values():
        assert r.console == "oo" and r.state_digest == native.state_digest
        assert r.monitor_events["emulation:device"] == 5
        assert r.cycles_by_category["devices"] == 5 * COST["emu_device"]


def test_disk_dma_reads_and_writes_the_virtual_disk():
    src = """
        movi r1, 1
        out  blk_sector, r1
        movi r1, 0x4000
        out  blk_buffer, r1
        movi r1, 1           ; read sector 1 into 0x4000
        out  blk_command, r1
        movi r1, 0
        out  blk_sector, r1
        movi r1, 2           ; write it back to sector 0
        out  blk_command, r1
        in   r5, blk_command
        hlt
    """
    disk = np.arange(2 * 128, dtype=np.uint32) + 1000
    img = image(src, disk_sectors=2, disk=disk)
    native = run_technique(img, "native")
    for mode in MODES:
        r = run_technique(img, "emulation", mode=mode)
        assert r.state_digest == native.state_digest
        assert r.events["blk_reads"] == 1 and r.events["blk_writes"] == 1


def test_translation_cache_can_be_dumped_and_flushes_when_full():
    img = image(loop_source(30, 4))
    mon = Emulation(img, mode="translate")
    mon.run(10_000)
    blocks = mon.translation_blocks()
    assert [b["length"] for b in blocks] == [3, 4]
    assert blocks[1]["uops"][-1].startswith("BNE r1, r2")
    assert "ADDI r3, r3" in mon.dump_block(blocks[1]["pc"])
    assert mon.dump_block(0x9999) is None
    # a cache of exactly one maximal block: every new translation flushes the cache first
    small = Emulation(img, mode="translate", cache_size=K.MAX_BLOCK)
    r = small.run(10_000)
    assert r.monitor_events["emulation:tb_flushes"] >= 1
    assert r.state_digest == run_technique(img, "native").state_digest


# ================================================================================================
# 4. resource control
# ================================================================================================
def contained(source, **kw):
    """Run under emulation with a pattern in the monitor's region; return (result, intact)."""
    results = []
    for mode in MODES:
        mon = Emulation(image(source), mode=mode, **kw)
        mon._boot()
        mon.host_mem[:MONITOR_BYTES // 4] = 0x5EC2E7
        mon.ran = True
        mon._run(10_000)
        intact = bool(np.all(mon.host_mem[:MONITOR_BYTES // 4] == 0x5EC2E7))
        results.append((mon.result(), intact))
    return results


BEYOND_RAM = """
    movi r2, 0x77
    lui  r1, 0x10        ; 1 MiB: beyond the guest's 64 KiB
    st   r2, [r1]
    hlt
"""
MAPPED_BEYOND = """
    movi r1, 0x3000
    wrcr ptbr, r1
    movi r1, 1
    wrcr paging, r1
    movi r2, 0x77
    movi r1, 0x1000      ; virtual page 1 maps frame 0x100000, beyond the guest's RAM
    st   r2, [r1]
    hlt
.org 0x3000
    .word 0x0007
    .word 0x100007
"""


@pytest.mark.parametrize("source", [BEYOND_RAM, MAPPED_BEYOND])
def test_a_guest_cannot_reach_host_memory_outside_its_slice(source):
    native = run_technique(image(source), "native", levels=1)
    assert native.stop == "unhandled_trap" and native.stop_vector == isa.VEC_GP
    for r, intact in contained(source, levels=1):
        assert intact
        assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_GP
        assert r.state_digest == native.state_digest


def test_disk_dma_beyond_the_guests_ram_is_refused_by_the_device_model():
    src = """
        movi r1, 0
        out  blk_sector, r1
        li   r1, 0xFF80      ; 128 bytes below the end of the 64 KiB RAM: a sector does not fit
        out  blk_buffer, r1
        movi r1, 1
        out  blk_command, r1
        in   r5, blk_command
        hlt
    """
    img = image(src, disk_sectors=1, disk=np.full(128, 0xDEAD, dtype=np.uint32))
    native = run_technique(img, "native")
    assert native.registers[5] == S.BLK_BAD_ADDRESS
    for mode in MODES:
        mon = Emulation(img, mode=mode)
        mon._boot()
        mon.host_mem[:MONITOR_BYTES // 4] = 0x5EC2E7
        mon.ran = True
        mon._run(1000)
        assert np.all(mon.host_mem[:MONITOR_BYTES // 4] == 0x5EC2E7)
        assert mon.result().state_digest == native.state_digest


def test_guest_memory_is_the_slice_of_host_memory_at_the_guest_base():
    mon = Emulation(image(BEYOND_RAM), mode="interpret")
    mon.run(100)
    assert mon.layout.guest_base == MONITOR_BYTES
    assert np.shares_memory(mon.gmem, mon.host_mem)
    assert mon.host_mem[MONITOR_BYTES // 4] == mon.gmem[0] != 0


# ================================================================================================
# 5. settings  6. budget
# ================================================================================================
def test_bad_settings_are_refused_with_clear_messages():
    img = image("hlt")
    with pytest.raises(ValueError, match="did you mean 'translate'"):
        Emulation(img, mode="translat")
    with pytest.raises(ValueError, match="'interpret'.*'translate'"):
        Emulation(img, mode=3)
    with pytest.raises(ValueError, match="cache_size"):
        Emulation(img, cache_size=8)
    with pytest.raises(TypeError, match="cache_size"):
        Emulation(img, cache_size="big")
    with pytest.raises(ValueError, match="tlb_size must be a power of two"):
        Emulation(img, tlb_size=3)
    with pytest.raises(ValueError, match="levels"):
        Emulation(img, levels=5)
    with pytest.raises(ValueError, match="mode"):
        run_technique(img, "emulation", mode="bochs")
    assert "emulation" in available_techniques()


@pytest.mark.parametrize("mode", MODES)
def test_a_runaway_guest_stops_at_its_budget(mode):
    r = run_technique(image("spin: jmp spin"), "emulation", 1234, mode=mode)
    assert r.stop == "budget" and r.instructions == 1234 and r.pc == 0


def test_result_reports_console_traps_and_the_exit_table():
    src = """
        movi r1, 0x100
        wrcr tvb, r1
        movi r1, handler
        st   r1, [r0 + 0x100 + 4 * 0x80]
        syscall
        movi r1, 'k'
        out  console, r1
        hlt
    handler:
        iret
    """
    native = run_technique(image(src), "native")
    r = run_technique(image(src), "emulation")
    assert r.console == "k" and r.traps == native.traps == {"syscall": 1}
    assert r.state_digest == native.state_digest and r.user_digest == native.user_digest
    assert "emulation:tb_executed" in r.exit_table() and r.notes == ["mode: translate"]
