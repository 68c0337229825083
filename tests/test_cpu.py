"""Behaviour of the jitted CPU, one instruction class at a time.

Expected values are worked out by hand from the ISA and the semantics in kernel_sim/state.py.
"""
import pytest

import numpy as np

from kernel_sim import isa
from kernel_sim.asm import assemble
from kernel_sim.machine import Machine
from kernel_sim.runner import build_machine, run_source
from kernel_sim.state import C_FAULT_ADDR, TRACE_TRAP

# A minimal ring-0 kernel: a vector table whose handlers record the vector in r13 and the
# error code in r12, skip the faulting instruction and return with IRET.
KERNEL = r"""
TVB  = 0x8000
KSTK = 0x9000
start:
    li   r1, TVB
    wrcr tvb, r1
    li   r1, KSTK
    wrcr ksp, r1
    li   r1, TVB
    li   r2, on_trap
    movi r3, 0
    movi r4, 256
fill:                          ; every vector -> on_trap
    shli r5, r3, 2
    add  r5, r5, r1
    st   r2, [r5]
    addi r3, r3, 1
    bne  r3, r4, fill
    jmp  user_entry
on_trap:                       ; frame at sp: [err, pc, cpl, flags, old_sp]
    ld   r12, [sp]
    ld   r11, [sp + 4]
    addi r11, r11, 4
    st   r11, [sp + 4]
    addi r13, r13, 1
    iret
"""


def run_kernel(body, **kw):
    return run_source(KERNEL + "user_entry:\n" + body, "t.s", **kw)


def test_addi_wraps_around_32_bits():
    r = run_source("start: li r1, 0xFFFFFFFF\n addi r1, r1, 2\n hlt\n")
    assert r.registers[1] == 1


def test_sub_below_zero_gives_twos_complement():
    r = run_source("start: movi r1, 3\n movi r2, 5\n sub r3, r1, r2\n hlt\n")
    assert r.registers[3] == 0xFFFFFFFE


def test_mul_keeps_low_32_bits_of_large_product():
    r = run_source("start: li r1, 0xFFFFFFFF\n li r2, 0xFFFFFFFF\n mul r3, r1, r2\n hlt\n")
    assert r.registers[3] == (0xFFFFFFFF * 0xFFFFFFFF) & 0xFFFFFFFF == 1


def test_sar_keeps_the_sign_shr_does_not():
    r = run_source("start: li r1, 0x80000000\n sari r2, r1, 4\n shri r3, r1, 4\n hlt\n")
    assert r.registers[2] == 0xF8000000
    assert r.registers[3] == 0x08000000


def test_slt_is_signed_sltu_is_unsigned():
    r = run_source("start: movi r1, -1\n movi r2, 1\n slt r3, r1, r2\n sltu r4, r1, r2\n hlt\n")
    assert (r.registers[3], r.registers[4]) == (1, 0)


def test_div_and_mod_are_unsigned():
    r = run_source("start: movi r1, -7\n movi r2, 2\n div r3, r1, r2\n mod r4, r1, r2\n hlt\n")
    assert r.registers[3] == (2**32 - 7) // 2
    assert r.registers[4] == (2**32 - 7) % 2


def test_div_by_zero_raises_divide_error_without_writing():
    r = run_source("start: movi r1, 9\n movi r3, 77\n div r3, r1, r2\n hlt\n")
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_DE
    assert r.registers[3] == 77 and r.pc == 8          # pc stays on the faulting DIV


def test_blt_taken_for_negative_bltu_not_taken():
    src = """start: movi r1, -1
        movi r2, 1
        blt  r1, r2, yes
        movi r5, 1
yes:    bltu r1, r2, no
        movi r6, 1
no:     hlt
"""
    r = run_source(src)
    assert r.registers[5] == 0 and r.registers[6] == 1


def test_call_pushes_return_address_and_ret_pops_it():
    src = """start: li sp, 0x1000
        call f
        movi r2, 2
        hlt
f:      ld   r1, [sp]
        ret
"""
    r = run_source(src)
    assert r.registers[1] == 0x0C        # li is two words, so the call's return address is 12
    assert r.registers[2] == 2 and r.registers[15] == 0x1000


def test_push_pop_round_trip_and_pop_sp_loads_sp():
    r = run_source("start: li sp, 0x1000\n movi r1, 5\n push r1\n pop r2\n"
                   " li r3, 0x777\n push r3\n pop sp\n hlt\n")
    assert r.registers[2] == 5 and r.registers[15] == 0x777


def test_invalid_opcode_zero_raises_ud():
    r = run_source("start: .word 0\n")
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_UD


def test_reserved_monitor_opcode_is_invalid_on_bare_machine():
    r = run_source("start: .word 0xF0000000\n")
    assert r.stop_vector == isa.VEC_UD


@pytest.mark.parametrize("ins", ["cli", "sti", "hlt", "in r1, console", "out console, r1",
                                 "wrcr scratch, r1", "rdcr r1, scratch", "invlpg r1",
                                 "tlbflush", "iret", "sysret"])
@pytest.mark.parametrize("ring", [1, 2, 3])
def test_privileged_instruction_outside_ring0_raises_gp(ins, ring):
    r = run_source(f"start: {ins}\n hlt\n", ring=ring)
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_GP
    assert r.events["privilege_faults"] == 1 and r.pc == 0


def test_privileged_instruction_in_ring0_does_not_fault():
    r = run_source("start: cli\n sti\n rdcr r1, scratch\n hlt\n", ring=0)
    assert r.events["privilege_faults"] == 0


def test_popf_in_ring3_ignores_interrupt_flag():
    r = run_source("start: li sp, 0x1000\n movi r1, 0x200\n push r1\n popf\n pushf\n pop r2\n"
                   " movi r0, 0\n hlt\n", ring=3, count=6)
    assert r.registers[2] == 0                      # IF stayed 0: the change was dropped
    assert r.events["popf_ignored"] == 1 and r.traps == {}


def test_popf_in_ring0_sets_interrupt_flag():
    r = run_source("start: li sp, 0x1000\n movi r1, 0x200\n push r1\n popf\n pushf\n pop r2\n"
                   " cli\n hlt\n")
    assert r.registers[2] == 0x200


@pytest.mark.parametrize("ins", ["pushf", "popf", "getcpl r1", "rdtvb r1"])
def test_strict_machine_makes_sensitive_instruction_trap_in_ring3(ins):
    src = f"start: li sp, 0x1000\n {ins}\n hlt\n"       # li is two words: {ins} is at 8
    lax = run_source(src, ring=3)
    assert lax.stop_vector == isa.VEC_GP and lax.pc == 12   # only the privileged HLT faults
    r = run_source(src, ring=3, strict=True)
    assert r.stop_vector == isa.VEC_GP and r.pc == 8


def test_getcpl_reveals_the_ring():
    for ring in range(4):
        r = run_source("start: getcpl r1\n .word 0\n", ring=ring)
        assert r.registers[1] == ring


def test_syscall_from_ring3_switches_to_kernel_stack_and_pushes_frame():
    src = KERNEL.replace("iret", "hlt") + "user_entry:\n li sp, 0x5000\n syscall\n"
    m = build_machine(src, "t.s", ring=3)
    m = build_machine(KERNEL + "user_entry:\n hlt\n", "t.s")
    m.run(count=2000)                            # ring 0 setup: vector table, ksp
    from kernel_sim.asm import assemble
    user = assemble(".org 0x4000\nu: li sp, 0x5000\n syscall\n", "u.s")
    for address, words in user.segments:
        m.mem[address // 4:address // 4 + len(words)] = words
    m.pc, m.cpl = 0x4000, 3
    m.regs[13] = 0
    # stop right at the handler's first instruction
    r = m.run(count=3, until=m.program.symbols["on_trap"])
    assert r.stop == "until" and r.cpl == 0
    sp = r.registers[15]
    assert sp == 0x9000 - 20
    frame = [m.read_word(sp + 4 * k) for k in range(5)]
    assert frame == [0, 0x400C, 3, 0, 0x5000]    # err, return pc, cpl, flags, old sp
    assert r.traps == {"syscall": 1}


def test_iret_returns_to_the_frame_ring():
    r = run_kernel("movi r1, 1\n div r2, r1, r0\n movi r3, 3\n cli\n hlt\n")
    assert r.registers[13] == 1 and r.registers[12] == 0   # one trap, error code 0
    assert r.registers[3] == 3 and r.stop == "halt"


def test_timer_interrupt_lands_after_exactly_period_ticks():
    body = """
        movi r1, 10
        sti
arm:    out  timer, r1        ; deadline = ticks before this instruction + 10
spin:   addi r9, r9, 1
        jmp  spin
"""
    m = build_machine(KERNEL.replace("iret", "cli\n hlt") + "user_entry:\n" + body, "t.s")
    t_arm = m.run(count=10_000, until=m.program.symbols["arm"]).instructions
    r = m.run(count=10_000)
    assert r.traps == {"timer_interrupt": 1} and r.stop == "halt"
    tick, pc, kind, detail = next(rec for rec in m.trace if rec[2] == TRACE_TRAP)
    assert tick == t_arm + 10
    # OUT plus 9 loop instructions retired before the interrupt: 5 addi + 4 jmp
    assert r.registers[9] == 5


def test_hlt_skips_idle_ticks_to_the_next_deadline():
    body = """
        movi r1, 100
        out  timer, r1
        sti
        hlt
"""
    m = build_machine(KERNEL.replace("iret", "cli\n hlt") + "user_entry:\n" + body, "t.s")
    r = m.run()
    # 3 of the 100 ticks pass as instructions (out retired at tick T+1 ... hlt at T+3)
    assert r.events["idle_ticks"] == 100 - 3
    assert r.traps == {"timer_interrupt": 1}


def test_hlt_with_interrupts_off_stops_the_machine():
    r = run_source("start: hlt\n movi r1, 1\n")
    assert r.stop == "halt" and r.registers[1] == 0


def test_budget_stops_a_runaway_loop():
    r = run_source("start: jmp start\n", count=1000)
    assert r.stop == "budget" and r.instructions == 1000


def test_console_output_and_unknown_port_reads_all_ones():
    r = run_source("start: movi r1, 'o'\n out console, r1\n movi r1, 'k'\n out console, r1\n"
                   " in r2, 0x99\n hlt\n")
    assert r.console == "ok" and r.registers[2] == 0xFFFFFFFF


def test_memory_access_beyond_physical_memory_is_gp():
    r = run_source("start: li r1, 0x7FFFFFF0\n ld r2, [r1]\n hlt\n", memory_size=64 << 10)
    assert r.stop_vector == isa.VEC_GP


PAGING = r"""
ROOT = 0x10000
L0   = 0x11000
start:
    li   r1, ROOT
    li   r2, L0 | 7
    st   r2, [r1]              ; directory entry 0 -> L0 (present, writable, user)
    li   r6, L0
    li   r7, 0 | 3             ; page 0 (code): present, writable, supervisor only
    st   r7, [r6]
    li   r7, 0x5000 | 1        ; page 5: present, read-only, supervisor
    st   r7, [r6 + 20]
    li   r7, 0x6000 | 7        ; page 6: user read/write
    st   r7, [r6 + 24]
    li   r7, 0x10000 | 3       ; page tables mapped for the kernel
    st   r7, [r6 + 64]
    li   r7, 0x11000 | 3
    st   r7, [r6 + 68]
    wrcr ptbr, r1
    movi r1, 1
    wrcr paging, r1
"""


def test_two_level_walk_reads_two_entries_and_fills_tlb():
    r = run_source(PAGING + " li r3, 0x6000\n ld r4, [r3]\n ld r4, [r3 + 4]\n hlt\n",
                   paging_levels=2)
    # misses: the code page (fetch after enabling) and page 6; each walk reads 2 entries
    assert r.events["tlb_misses"] == 2 and r.events["walk_refs"] == 4


def test_walk_sets_accessed_and_dirty_bits():
    m = build_machine(PAGING + " li r3, 0x6000\n st r4, [r3]\n hlt\n", "t.s")
    m.run()
    pte = m.read_word(0x11000 + 24)
    assert pte & isa.PTE_A and pte & isa.PTE_D


def test_write_to_read_only_page_is_page_fault_present_write():
    r = run_source(PAGING + " li r3, 0x5000\n st r4, [r3]\n hlt\n")
    assert r.stop_vector == isa.VEC_PF
    assert r.stop_error == isa.PF_PRESENT | isa.PF_WRITE


def test_not_present_page_faults_with_fault_address():
    m = build_machine(PAGING + " li r3, 0x7004\n ld r4, [r3]\n hlt\n", "t.s")
    r = m.run()
    assert r.stop_vector == isa.VEC_PF and r.stop_error == 0
    assert m.ctrl[C_FAULT_ADDR] == 0x7004


def test_untagged_ptbr_reload_flushes_tlb():
    r = run_source(PAGING + " li r3, 0x6000\n ld r4, [r3]\n li r1, ROOT\n wrcr ptbr, r1\n"
                   " ld r4, [r3]\n hlt\n")
    assert r.events["tlb_flushes"] == 3          # PTBR load, enabling paging, the reload
    assert r.events["tlb_misses"] == 4           # code + data, then both again


def test_tagged_ptbr_reload_keeps_tlb():
    r = run_source(PAGING + " li r3, 0x6000\n ld r4, [r3]\n li r1, ROOT | 5\n wrcr ptbr, r1\n"
                   " li r1, ROOT\n ori r1, r1, 5\n ld r4, [r3]\n hlt\n")
    # ASID 5 is a new tag, so its entries are cold; the ASID-0 entries were not flushed
    assert r.events["tlb_flushes"] == 2          # only the two of the setup


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_walk_reads_one_entry_per_level(levels):
    # build an n-level chain mapping page 0 (code) with the tables at 0x10000 + k*0x1000
    lines = ["start:"]
    for k in range(levels - 1):
        lines += [f" li r1, {0x10000 + k * 0x1000}", f" li r2, {0x10000 + (k + 1) * 0x1000} | 3",
                  " st r2, [r1]"]
    lines += [f" li r1, {0x10000 + (levels - 1) * 0x1000}", " li r2, 3", " st r2, [r1]",
              " li r1, 0x10000", " wrcr ptbr, r1", " movi r1, 1", " wrcr paging, r1",
              " nop", " hlt"]
    r = run_source("\n".join(lines) + "\n", paging_levels=levels)
    assert r.stop == "halt"
    assert r.events["tlb_misses"] == 1 and r.events["walk_refs"] == levels


# ---- block device ---------------------------------------------------------------------------
BLOCK_PROGRAM = """
    movi r1, 1
    out blk_sector, r1          ; sector 1
    li r2, 0x2000
    out blk_buffer, r2          ; buffer at 0x2000
    movi r3, 1
    out blk_command, r3         ; read sector 1 -> 0x2000
    in r4, blk_command          ; status
    movi r5, 0
    out blk_sector, r5
    movi r3, 2
    out blk_command, r3         ; write 0x2000 -> sector 0
    in r6, blk_size
    movi r1, 9
    out blk_sector, r1          ; beyond the disk
    movi r3, 1
    out blk_command, r3
    in r7, blk_command          ; status 1: bad address
    movi r3, 7
    out blk_command, r3
    in r8, blk_command          ; status 2: bad command
    hlt
"""


def test_block_device_reads_and_writes_whole_sectors_by_dma():
    m = Machine(memory_size=64 << 10, disk_sectors=4)
    m.disk[128:256] = np.arange(1000, 1128, dtype=np.uint32)     # sector 1
    m.load(assemble(BLOCK_PROGRAM))
    assert m.disk[128] == 1000, "loading a program must not erase the disk"
    r = m.run(count=1000)
    assert r.stop == "halt"
    words = m.mem[0x2000 // 4:0x2000 // 4 + 128]
    assert list(words) == list(range(1000, 1128))                # the whole sector, in order
    assert m.mem[0x2000 // 4 + 128] == 0                         # and nothing after it
    assert list(m.disk[:128]) == list(range(1000, 1128))         # written back to sector 0
    assert [int(m.regs[i]) for i in (4, 6, 7, 8)] == [0, 4, 1, 2]
    assert r.events["blk_reads"] == 1 and r.events["blk_writes"] == 1


def test_block_device_refuses_a_buffer_that_does_not_fit_in_memory():
    m = Machine(memory_size=16 << 10, disk_sectors=1)
    m.disk[:] = 7
    m.load(assemble("""
        li r2, 0x3F04           ; 0x3F04 + 512 > 16 KiB
        out blk_buffer, r2
        movi r3, 1
        out blk_command, r3
        in r4, blk_command
        hlt
    """))
    r = m.run(count=100)
    assert r.stop == "halt" and m.regs[4] == 1 and r.events["blk_reads"] == 0
    assert not m.mem[0x3F00 // 4:m.memory_size // 4].any()      # nothing copied


def test_vmcall_is_an_invalid_opcode_on_the_bare_machine():
    m = Machine(memory_size=16 << 10)
    m.load(assemble("vmcall 3\n"))
    r = m.run(count=10)
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_UD and r.pc == 0


# ---- the monitor's data limit (segment-limit protection of a translation cache) -------------
def test_data_limit_faults_data_accesses_outside_ring_0_but_not_fetches():
    from kernel_sim.state import C_DATA_LIMIT
    source = """
        .org 0x9000             ; the code itself lies above the limit: fetches are allowed
    start:
        li r2, 0x7FFC
        ld r3, [r2]             ; below the limit: fine
        li r2, 0x8000
        ld r4, [r2]             ; at the limit: #GP(0) in ring 1
        hlt
    """
    m = Machine(memory_size=64 << 10, ring=1)
    m.load(assemble(source))
    m.ctrl[C_DATA_LIMIT] = 0x8000
    r = m.run(count=100)
    assert r.stop == "unhandled_trap" and r.stop_vector == isa.VEC_GP and r.stop_error == 0
    assert r.pc == 0x9000 + 4 * 5           # the second ld (li is two words)
    # ring 0 is the monitor's own ring: the limit does not apply there
    m0 = Machine(memory_size=64 << 10, ring=0)
    m0.load(assemble(source))
    m0.ctrl[C_DATA_LIMIT] = 0x8000
    assert m0.run(count=100).stop == "halt"
