"""Unit tests of the reference interpreter (tests/naive.py) on hand-written programs.

Every expected value below is worked out by hand from the contract in kernel_sim/state.py, so
these tests check the oracle itself before the differential tests trust it.  Programs are encoded
with :func:`kernel_sim.isa.encode` so that they do not depend on the assembler.
"""
from __future__ import annotations

from naive import EPT_R, EPT_RWX, NaiveMachine

from kernel_sim import isa
from kernel_sim import state as S
from kernel_sim.isa import encode, encode_j

CODE = 0x1000
TVB = 0x0400          # the vector table: 256 words at 0x400..0x7FF
HANDLER = 0x2000
KSTACK = 0x8000
ROOT, LEAF = 0x3000, 0x4000
DATA = 0x5000
COSTS = isa.cost_table() + [10, 20, 50, 1] + [0] * (S.NUM_COSTS - 260)


def machine(ring=0, strict=False, **kw) -> NaiveMachine:
    kw.setdefault("memory_size", 64 << 10)
    kw.setdefault("tlb_size", 8)
    return NaiveMachine(ring=ring, strict=strict, costs=COSTS, **kw)


def load(m: NaiveMachine, address: int, words) -> None:
    for n, word in enumerate(words):
        m.mem[address // 4 + n] = word & 0xFFFFFFFF


def install_handler(m: NaiveMachine, vector: int, words, address: int = HANDLER) -> None:
    m.tvb = TVB
    m.ksp = KSTACK
    m.mem[(TVB + 4 * vector) // 4] = address
    load(m, address, words)


def two_level_paging(m: NaiveMachine, mappings) -> None:
    """Identity-map pages: ``mappings`` is {virtual page address: PTE permission bits}."""
    m.mem[ROOT // 4] = LEAF | isa.PTE_P | isa.PTE_W | isa.PTE_U
    for page, perms in mappings.items():
        m.mem[LEAF // 4 + (page >> 12)] = page | perms
    m.ptbr = ROOT
    m.paging = 1


def word_at(m: NaiveMachine, address: int) -> int:
    return m.mem[address // 4]


PUW = isa.PTE_P | isa.PTE_U | isa.PTE_W


def test_syscall_from_ring3_switches_to_kernel_stack_and_pushes_five_word_frame():
    m = machine(ring=3)
    m.pc, m.regs[isa.SP], m.if_ = CODE, 0x6000, 1
    load(m, CODE, [encode(isa.OP_SYSCALL)])
    install_handler(m, isa.VEC_SYSCALL, [encode(isa.OP_HLT)])
    assert m.run(budget=10) == S.STOP_HALT
    assert (m.cpl, m.if_, m.pc) == (0, 0, HANDLER + 4)
    sp = m.regs[isa.SP]
    assert sp == KSTACK - 20
    # [sp]=error, [sp+4]=return pc (after the SYSCALL), [sp+8]=old cpl, [sp+12]=old flags,
    # [sp+16]=old sp
    assert [word_at(m, sp + 4 * n) for n in range(5)] == [0, CODE + 4, 3, isa.FLAG_IF, 0x6000]
    assert m.counters[S.EV_VECTOR_BASE + isa.VEC_SYSCALL] == 1
    assert m.counters[S.EV_TRAPS] == 1
    assert m.counters[S.EV_INSTRUCTIONS] == 2


def test_syscall_from_ring0_keeps_the_current_stack():
    m = machine(ring=0)
    m.pc, m.regs[isa.SP] = CODE, 0x6000
    load(m, CODE, [encode(isa.OP_SYSCALL)])
    install_handler(m, isa.VEC_SYSCALL, [encode(isa.OP_HLT)])
    m.run(budget=10)
    assert m.regs[isa.SP] == 0x6000 - 20
    assert word_at(m, 0x6000 - 4) == 0x6000


def test_popf_in_ring3_ignores_interrupt_flag():
    program = [encode(isa.OP_MOVI, 1, 0, isa.FLAG_IF), encode(isa.OP_PUSH, 1),
               encode(isa.OP_POPF)]
    m = machine(ring=3)
    m.pc, m.regs[isa.SP] = CODE, 0x6000
    load(m, CODE, program)
    assert m.run(budget=3) == S.STOP_BUDGET
    assert m.if_ == 0
    assert m.counters[S.EV_POPF_IGNORED] == 1
    assert m.regs[isa.SP] == 0x6000


def test_popf_in_ring0_sets_interrupt_flag():
    m = machine(ring=0)
    m.pc, m.regs[isa.SP] = CODE, 0x6000
    load(m, CODE, [encode(isa.OP_MOVI, 1, 0, isa.FLAG_IF), encode(isa.OP_PUSH, 1),
                   encode(isa.OP_POPF)])
    m.run(budget=3)
    assert m.if_ == 1
    assert m.counters[S.EV_POPF_IGNORED] == 0


def test_pushf_reveals_the_real_interrupt_flag_in_ring3():
    m = machine(ring=3)
    m.pc, m.regs[isa.SP], m.if_ = CODE, 0x6000, 1
    load(m, CODE, [encode(isa.OP_PUSHF)])
    m.run(budget=1)
    assert word_at(m, 0x6000 - 4) == isa.FLAG_IF


def test_getcpl_reads_the_ring_without_strict_mode():
    m = machine(ring=3)
    m.pc = CODE
    load(m, CODE, [encode(isa.OP_GETCPL, 1)])
    assert m.run(budget=1) == S.STOP_BUDGET
    assert m.regs[1] == 3


def test_strict_mode_makes_getcpl_fault_outside_ring0():
    m = machine(ring=3, strict=True)
    m.pc = CODE
    load(m, CODE, [encode(isa.OP_GETCPL, 1)])
    assert m.run(budget=1) == S.STOP_UNHANDLED_TRAP
    assert (m.stop_vector, m.stop_error, m.pc, m.regs[1]) == (isa.VEC_GP, 0, CODE, 0)
    assert m.counters[S.EV_INSTRUCTIONS] == 0


def test_privileged_instruction_in_ring1_raises_general_protection():
    m = machine(ring=1)
    m.pc = CODE
    load(m, CODE, [encode(isa.OP_CLI)])
    assert m.run(budget=1) == S.STOP_UNHANDLED_TRAP
    assert m.stop_vector == isa.VEC_GP
    assert m.counters[S.EV_PRIV_FAULTS] == 1


def test_two_level_walk_counts_two_references_and_sets_accessed_and_dirty_bits():
    m = machine()
    two_level_paging(m, {CODE: isa.PTE_P | isa.PTE_U, DATA: PUW})
    m.pc, m.regs[2] = CODE, DATA
    load(m, CODE, [encode(isa.OP_ST, 1, 2, 8)])
    assert m.run(budget=1) == S.STOP_BUDGET
    # the fetch misses and walks 2 levels; the store misses and walks 2 levels
    assert m.counters[S.EV_TLB_MISS] == 2
    assert m.counters[S.EV_WALK_REFS] == 4
    assert m.cycles == 2 + 2 * 10 + 4 * 20          # ST + 2 misses + 4 references
    assert word_at(m, LEAF + 4 * 5) == DATA | PUW | isa.PTE_A | isa.PTE_D
    assert word_at(m, LEAF + 4 * 1) == CODE | isa.PTE_P | isa.PTE_U | isa.PTE_A   # no D
    assert word_at(m, ROOT) & (isa.PTE_A | isa.PTE_D) == isa.PTE_A     # D only in leaves
    # the TLB entry of the data page carries frame | W | U | D
    assert m.tlb[2 * 5 + 0] == 5 + 1 and m.tlb[2 * 5 + 1] == DATA | PUW & ~isa.PTE_P | isa.PTE_D


def test_second_access_to_same_page_hits_tlb():
    m = machine()
    two_level_paging(m, {CODE: isa.PTE_P, DATA: PUW})
    m.pc, m.regs[2] = CODE, DATA
    m.mem[DATA // 4 + 1] = 1234
    load(m, CODE, [encode(isa.OP_LD, 1, 2, 0), encode(isa.OP_LD, 3, 2, 4)])
    m.run(budget=2)
    assert m.regs[3] == 1234
    assert m.counters[S.EV_TLB_MISS] == 2         # first fetch, first load
    assert m.counters[S.EV_TLB_HIT] == 2          # second fetch, second load
    assert m.counters[S.EV_WALK_REFS] == 4


def test_read_hit_then_write_rewalks_to_set_dirty_bit():
    m = machine()
    two_level_paging(m, {CODE: isa.PTE_P, DATA: PUW})
    m.pc, m.regs[2] = CODE, DATA
    load(m, CODE, [encode(isa.OP_LD, 1, 2, 0), encode(isa.OP_ST, 1, 2, 0)])
    m.run(budget=2)
    # the TLB entry filled by the load lacks D, so the store misses and walks again
    assert m.counters[S.EV_TLB_MISS] == 3
    assert word_at(m, LEAF + 4 * 5) & isa.PTE_D


def test_stale_tlb_entry_is_used_until_invlpg():
    m = machine()
    other = 0x6000
    two_level_paging(m, {CODE: isa.PTE_P, DATA: PUW, other: PUW, LEAF: PUW})
    m.mem[DATA // 4], m.mem[other // 4] = 111, 222
    m.pc, m.regs[2], m.regs[4] = CODE, DATA, other | PUW
    m.regs[5] = LEAF + 4 * 5                        # the PTE of DATA
    load(m, CODE, [encode(isa.OP_LD, 1, 2, 0),      # fills the TLB: DATA -> DATA
                   encode(isa.OP_ST, 4, 5, 0),      # remap DATA -> other in memory
                   encode(isa.OP_LD, 1, 2, 0),      # stale entry: still reads 111
                   encode(isa.OP_INVLPG, 2),
                   encode(isa.OP_LD, 3, 2, 0)])     # walks again: reads 222
    m.run(budget=5)
    assert (m.regs[1], m.regs[3]) == (111, 222)
    assert m.counters[S.EV_INVLPG] == 1


def test_write_to_read_only_page_faults_with_present_and_write_bits():
    m = machine()
    two_level_paging(m, {CODE: isa.PTE_P, DATA: isa.PTE_P | isa.PTE_U})
    m.pc, m.regs[2] = CODE, DATA
    load(m, CODE, [encode(isa.OP_ST, 1, 2, 8)])
    assert m.run(budget=1) == S.STOP_UNHANDLED_TRAP
    assert (m.stop_vector, m.stop_error) == (isa.VEC_PF, isa.PF_PRESENT | isa.PF_WRITE)
    assert m.fault_addr == DATA + 8
    assert m.counters[S.EV_PAGE_FAULTS] == 1
    assert not word_at(m, LEAF + 4 * 5) & isa.PTE_D
    assert m.tlb[2 * 5] == 0                        # faults do not fill the TLB


def test_user_access_to_supervisor_page_faults_with_user_bit():
    m = machine(ring=3)
    two_level_paging(m, {CODE: isa.PTE_P | isa.PTE_U, DATA: isa.PTE_P | isa.PTE_W})
    m.pc, m.regs[2] = CODE, DATA
    load(m, CODE, [encode(isa.OP_LD, 1, 2, 0)])
    m.run(budget=1)
    assert (m.stop_vector, m.stop_error) == (isa.VEC_PF, isa.PF_PRESENT | isa.PF_USER)


def test_fetch_from_not_present_page_faults_with_fetch_bit():
    m = machine(ring=3)
    two_level_paging(m, {})
    m.pc = CODE
    m.run(budget=1)
    assert (m.stop_vector, m.stop_error) == (isa.VEC_PF, isa.PF_USER | isa.PF_FETCH)
    assert m.counters[S.EV_WALK_REFS] == 2


def test_timer_interrupt_arrives_after_exactly_n_retired_instructions():
    m = machine()
    m.pc, m.if_, m.regs[1], m.regs[isa.SP] = CODE, 1, 5, 0x6000
    load(m, CODE, [encode(isa.OP_OUT, 1, 0, isa.PORT_TIMER)] + [encode(isa.OP_NOP)] * 10)
    install_handler(m, isa.VEC_TIMER, [encode(isa.OP_HLT)])
    assert m.run(budget=100) == S.STOP_HALT
    # OUT at tick 0 sets the deadline to 5; OUT + 4 NOPs retire, then the interrupt is taken
    assert word_at(m, m.regs[isa.SP] + 4) == CODE + 5 * 4
    assert m.counters[S.EV_VECTOR_BASE + isa.VEC_TIMER] == 1
    assert m.counters[S.EV_INSTRUCTIONS] == 6
    assert m.timer_deadline == 10


def test_masked_timer_interrupt_stays_pending():
    m = machine()
    m.pc, m.regs[1] = CODE, 2
    load(m, CODE, [encode(isa.OP_OUT, 1, 0, isa.PORT_TIMER)] + [encode(isa.OP_NOP)] * 10)
    assert m.run(budget=5) == S.STOP_BUDGET
    assert m.timer_pending == 1
    assert m.counters[S.EV_TRAPS] == 0


def test_hlt_skips_to_the_deadline():
    m = machine()
    m.pc, m.if_, m.regs[1], m.regs[isa.SP] = CODE, 1, 100, 0x6000
    load(m, CODE, [encode(isa.OP_OUT, 1, 0, isa.PORT_TIMER), encode(isa.OP_HLT)])
    install_handler(m, isa.VEC_TIMER, [encode(isa.OP_HLT)])
    assert m.run(budget=100) == S.STOP_HALT
    # OUT: deadline 100, ticks 1; HLT: ticks 2, then 98 idle ticks to 100; handler HLT: 101
    assert m.counters[S.EV_IDLE_TICKS] == 98
    assert m.ticks == 101
    assert m.counters[S.EV_HLT] == 2
    assert m.cycles == 5 + 1 + 98 * 1 + 50 + 1
    assert word_at(m, m.regs[isa.SP] + 4) == CODE + 8


def test_hlt_with_interrupts_disabled_stops_after_the_hlt():
    m = machine()
    m.pc = CODE
    load(m, CODE, [encode(isa.OP_HLT)])
    assert m.run(budget=10) == S.STOP_HALT
    assert m.pc == CODE + 4


def test_div_by_zero_raises_vector_0():
    m = machine()
    m.pc, m.regs[2] = CODE, 7
    load(m, CODE, [encode(isa.OP_DIV, 1, 2, 3)])
    assert m.run(budget=1) == S.STOP_UNHANDLED_TRAP
    assert (m.stop_vector, m.pc, m.regs[1]) == (isa.VEC_DE, CODE, 0)


def test_unsigned_division_and_arithmetic_shift():
    m = machine()
    m.pc, m.regs[2], m.regs[3] = CODE, 0xFFFFFFFE, 2
    load(m, CODE, [encode(isa.OP_DIV, 1, 2, 3), encode(isa.OP_SAR, 4, 2, 3),
                   encode(isa.OP_SLT, 5, 2, 3), encode(isa.OP_SLTU, 6, 2, 3)])
    m.run(budget=4)
    assert m.regs[1] == 0x7FFFFFFF
    assert m.regs[4] == 0xFFFFFFFF
    assert (m.regs[5], m.regs[6]) == (1, 0)


def test_invalid_opcode_0_raises_vector_6():
    m = machine()
    m.pc = CODE
    assert m.run(budget=1) == S.STOP_UNHANDLED_TRAP
    assert (m.stop_vector, m.stop_error) == (isa.VEC_UD, 0)


def test_fault_handler_skips_instruction_and_iret_returns_to_user_ring():
    m = machine(ring=3)
    m.pc, m.regs[isa.SP], m.if_ = CODE, 0x6000, 1
    load(m, CODE, [0, encode(isa.OP_MOVI, 1, 0, 7)])        # word 0 is #UD
    install_handler(m, isa.VEC_UD, [encode(isa.OP_LD, 14, 15, 4),
                                    encode(isa.OP_ADDI, 14, 14, 4),
                                    encode(isa.OP_ST, 14, 15, 4),
                                    encode(isa.OP_IRET)])
    assert m.run(budget=5) == S.STOP_BUDGET
    assert (m.regs[1], m.cpl, m.if_, m.regs[isa.SP]) == (7, 3, 1, 0x6000)
    assert m.counters[S.EV_IRET] == 1


def test_push_pop_call_ret():
    m = machine()
    m.pc, m.regs[isa.SP], m.regs[1] = CODE, 0x6000, 0xABCD
    load(m, CODE, [encode(isa.OP_PUSH, 1), encode(isa.OP_POP, 2),
                   encode_j(isa.OP_CALL, 1), encode(isa.OP_HLT), encode(isa.OP_RET)])
    assert m.run(budget=10) == S.STOP_HALT
    assert m.regs[2] == 0xABCD
    assert m.regs[isa.SP] == 0x6000
    assert word_at(m, 0x6000 - 4) == CODE + 12      # CALL pushed its return address


def test_pop_sp_loads_the_popped_value():
    m = machine()
    m.pc, m.regs[isa.SP] = CODE, 0x6000
    m.mem[0x6000 // 4] = 0x1234
    load(m, CODE, [encode(isa.OP_POP, isa.SP)])
    m.run(budget=1)
    assert m.regs[isa.SP] == 0x1234


def test_access_beyond_memory_raises_general_protection():
    m = machine()
    m.pc, m.regs[2] = CODE, 64 << 10
    load(m, CODE, [encode(isa.OP_LD, 1, 2, 0)])
    m.run(budget=1)
    assert (m.stop_vector, m.stop_error) == (isa.VEC_GP, 0)


def test_intercepted_vector_stops_with_trap_exit_before_the_handler():
    m = machine()
    m.pc = CODE
    install_handler(m, isa.VEC_UD, [encode(isa.OP_HLT)])
    m.intercept[isa.VEC_UD] = 1
    assert m.run(budget=1) == S.STOP_TRAP_EXIT
    assert (m.pc, m.cpl, m.stop_vector) == (CODE, 0, isa.VEC_UD)


def test_fault_storm_ends_in_triple_fault():
    m = machine(ring=0)
    m.pc, m.regs[isa.SP] = CODE, 0x6000
    install_handler(m, isa.VEC_UD, [0])              # the handler itself is invalid
    assert m.run(budget=100) == S.STOP_TRIPLE_FAULT
    assert m.counters[S.EV_VECTOR_BASE + isa.VEC_UD] == 17


def test_wrcr_ptbr_with_nonzero_asid_keeps_tlb_entries_and_asid_0_flushes():
    m = machine()
    two_level_paging(m, {CODE: isa.PTE_P, DATA: PUW})
    m.ptbr = ROOT | 1
    m.pc, m.regs[1], m.regs[2], m.regs[3] = CODE, ROOT | 2, ROOT, DATA
    load(m, CODE, [encode(isa.OP_LD, 4, 3, 0),
                   encode(isa.OP_WRCR, 1, 0, isa.CR_PTBR),
                   encode(isa.OP_WRCR, 2, 0, isa.CR_PTBR)])
    m.run(budget=2)
    # ASID 1 -> 2 flushes nothing: the entries of ASID 1 (code page 1, data page 5) stay
    assert m.counters[S.EV_TLB_FLUSHES] == 0
    assert (m.tlb[2 * 1], m.tlb[2 * 5]) == ((1 << 20 | 1) + 1, (1 << 20 | 5) + 1)
    m.run(budget=1)
    # the third fetch misses under ASID 2; then ASID 0 flushes the whole TLB
    assert m.counters[S.EV_TLB_MISS] == 3
    assert m.counters[S.EV_TLB_FLUSHES] == 1
    assert m.tlb == [0] * 16


def test_console_output_and_ticks_port():
    m = machine()
    m.pc, m.regs[1] = CODE, ord("A") | 0x100
    load(m, CODE, [encode(isa.OP_OUT, 1, 0, isa.PORT_CONSOLE),
                   encode(isa.OP_IN, 2, 0, isa.PORT_TICKS),
                   encode(isa.OP_IN, 3, 0, 0x99)])
    m.run(budget=3)
    assert bytes(m.console) == b"A"
    assert (m.regs[2], m.regs[3]) == (1, 0xFFFFFFFF)
    assert m.trace_pos == 2                          # the OUT record and the stop record
    assert m.trace[0][2:] == [S.TRACE_IO, isa.PORT_CONSOLE << 32 | ord("A") | 0x100]


def test_export_uses_the_state_layout():
    m = machine()
    m.pc, m.ticks = CODE, 77
    arrays = m.export()
    assert arrays["ctrl"][S.C_PC] == CODE and arrays["ctrl"][S.C_TICKS] == 77
    assert arrays["ctrl"][S.C_TVB] == isa.NO_TVB
    assert arrays["regs"][isa.SP] == 64 << 10
    assert arrays["counters"].shape == (S.NUM_COUNTERS,)
    assert arrays["tlb"].shape == (16,)


def test_tlb_index_folds_high_page_bits():
    m = machine(tlb_size=8)
    key, index = m.tlb_key_and_index(0x80000)        # vpn 0x80: index (0x80 ^ 0x80 >> 7) & 7
    assert (key, index) == (0x80 + 1, 1)
    m.ptbr = 0x3000 | 5                               # the ASID tags the key, not the index
    assert m.tlb_key_and_index(0x80000) == ((5 << 20 | 0x80) + 1, 1)


def test_intercepted_traps_do_not_count_toward_a_fault_storm():
    m = machine()
    m.pc, m.deliveries = CODE, 16
    install_handler(m, isa.VEC_UD, [encode(isa.OP_HLT)])
    m.intercept[isa.VEC_UD] = 1
    assert m.run(budget=1) == S.STOP_TRAP_EXIT
    assert m.deliveries == 16


# ---- control-register counters and VMX non-root operation -----------------------------------
def test_ptbr_and_paging_accesses_have_their_own_counters():
    m = machine()
    m.pc = CODE
    load(m, CODE, [encode(isa.OP_MOVI, 1, 0, 0),
                   encode(isa.OP_WRCR, 1, 0, isa.CR_PAGING),       # paging off: flushes all
                   encode(isa.OP_MOVI, 2, 0, 0x3001),
                   encode(isa.OP_WRCR, 2, 0, isa.CR_PTBR),         # ASID 1: no flush
                   encode(isa.OP_RDCR, 3, 0, isa.CR_PTBR),
                   encode(isa.OP_RDCR, 4, 0, isa.CR_PAGING),
                   encode(isa.OP_WRCR, 2, 0, isa.CR_SCRATCH),
                   encode(isa.OP_HLT)])
    assert m.run(budget=20) == S.STOP_HALT
    assert m.regs[3] == 0x3001
    c = m.counters
    assert (c[S.EV_CR_WRITES], c[S.EV_PTBR_WRITES], c[S.EV_PAGING_WRITES]) == (3, 1, 1)
    assert (c[S.EV_CR_READS], c[S.EV_PTBR_READS]) == (2, 1)
    assert c[S.EV_TLB_FLUSHES] == 1


def guest(ring=0, controls=0, bitmap=0, **kw) -> NaiveMachine:
    """A machine in VMX non-root operation (the fields a VM entry would load)."""
    m = machine(ring=ring, **kw)
    m.vmx, m.vmx_controls, m.exception_bitmap = 1, controls, bitmap
    m.pc = CODE
    return m


def test_vmcall_exits_in_any_ring_and_is_undefined_on_a_bare_machine():
    vmcall = encode(isa.OP_VMCALL, 0, 0, 7)
    m = guest(ring=3)
    load(m, CODE, [encode(isa.OP_NOP), vmcall])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    assert (m.exit_reason, m.exit_qual, m.exit_instr) == (S.EXIT_VMCALL, 0, vmcall)
    assert m.pc == CODE + 4 and m.cpl == 3              # at the VMCALL, nothing retired
    assert m.counters[S.EV_INSTRUCTIONS] == 1
    bare = machine(ring=3)
    bare.pc = CODE
    load(bare, CODE, [encode(isa.OP_NOP), vmcall])
    assert bare.run(budget=10) == S.STOP_UNHANDLED_TRAP and bare.stop_vector == isa.VEC_UD


def test_io_exit_qualification_and_the_cr0_read_shadow():
    m = guest(controls=S.CTL_IO_EXITING | S.CTL_CR0_PG_EXITING)
    m.cr0_shadow = 1                                    # the guest believes paging is on
    out = encode(isa.OP_OUT, 2, 0, isa.PORT_CONSOLE)
    load(m, CODE, [encode(isa.OP_RDCR, 5, 0, isa.CR_PAGING), out])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    assert m.regs[5] == 1 and m.paging == 0
    # port 0x10 << 16, OUT (bit 3 clear), size 4 bytes (3)
    assert (m.exit_reason, m.exit_qual, m.exit_instr) == (S.EXIT_IO_INSTRUCTION, 0x100003, out)
    assert m.pc == CODE + 4 and m.console == bytearray() and m.counters[S.EV_IO_OUT] == 0


def test_cr_access_exit_qualifications():
    wrcr = encode(isa.OP_WRCR, 3, 0, isa.CR_PTBR)
    m = guest(controls=S.CTL_CR3_LOAD_EXITING)
    load(m, CODE, [wrcr])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    # cr 1, type 0 (write) << 4, register 3 << 8
    assert (m.exit_reason, m.exit_qual, m.exit_instr) == (S.EXIT_CR_ACCESS, 0x301, wrcr)
    assert m.counters[S.EV_CR_WRITES] == m.counters[S.EV_PTBR_WRITES] == 0
    m = guest(controls=S.CTL_CR3_STORE_EXITING)
    load(m, CODE, [encode(isa.OP_RDCR, 7, 0, isa.CR_PTBR)])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    assert (m.exit_reason, m.exit_qual) == (S.EXIT_CR_ACCESS, 1 | 1 << 4 | 7 << 8)


def test_page_fault_in_the_exception_bitmap_exits_without_touching_cr2():
    m = guest(bitmap=1 << isa.VEC_PF)
    two_level_paging(m, {CODE: PUW, TVB & ~0xFFF: PUW})
    m.fault_addr = 0x1234
    m.regs[2] = DATA + 8                                # page 5: not mapped
    load(m, CODE, [encode(isa.OP_LD, 1, 2, 0)])
    install_handler(m, isa.VEC_PF, [encode(isa.OP_HLT)])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    assert (m.exit_reason, m.exit_intr_info, m.exit_intr_error) == (S.EXIT_EXCEPTION_NMI, 14, 0)
    assert m.exit_qual == m.exit_gla == DATA + 8
    assert m.fault_addr == 0x1234 and m.counters[S.EV_PAGE_FAULTS] == 0
    assert m.counters[S.EV_TRAPS] == 0 and m.pc == CODE and m.idt_vectoring == 0


def one_level_ept(m: NaiveMachine, mappings, eptp: int = 0xE000) -> None:
    """A 1-level nested table: ``mappings`` is {guest page address: (host frame, EPT bits)}."""
    m.eptp, m.ept_levels = eptp, 1
    for page, (frame, perms) in mappings.items():
        m.mem[eptp // 4 + (page >> 12)] = frame | perms


def test_ept_with_guest_paging_off_combines_translations_and_exits_on_a_violation():
    m = guest()
    m.vpid = 3
    one_level_ept(m, {CODE: (CODE, EPT_RWX), DATA: (0x9000, EPT_R)})
    m.mem[0x9008 // 4] = 0xCAFE
    m.regs[2] = DATA + 8
    st = encode(isa.OP_ST, 1, 2, 0)
    load(m, CODE, [encode(isa.OP_LD, 1, 2, 0), st])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    assert m.regs[1] == 0xCAFE                          # read from host frame 0x9000
    # write needed (2), R granted (1 << 3), guest-virtual address valid (128), final page (256)
    assert (m.exit_reason, m.exit_qual) == (S.EXIT_EPT_VIOLATION, 2 | 1 << 3 | 128 | 256)
    assert (m.exit_gpa, m.exit_gla, m.exit_instr, m.pc) == (DATA + 8, DATA + 8, st, CODE + 4)
    c = m.counters
    # misses: fetch of LD (page 1), LD's data (page 5), ST's data (the entry lacks W): one
    # nested reference each; the ST's fetch hits
    assert (c[S.EV_TLB_MISS], c[S.EV_TLB_HIT], c[S.EV_NESTED_REFS], c[S.EV_WALK_REFS]) == \
        (3, 1, 3, 3)
    key = ((3 << 12 | 0) << 20 | 5) + 1                 # VPID 3, ASID 0, vpn 5
    assert m.tlb[2 * 5: 2 * 5 + 2] == [key, 0x9000 | isa.PTE_U]   # no W: EPT is read-only


def test_delivery_exits_on_an_ept_violation_with_idt_vectoring_information():
    m = guest(ring=3)
    one_level_ept(m, {0: (0, EPT_RWX), CODE: (CODE, EPT_RWX), HANDLER: (HANDLER, EPT_RWX),
                      KSTACK - isa.PAGE_SIZE: (KSTACK - isa.PAGE_SIZE, EPT_R)})
    load(m, CODE, [0])                                  # opcode 0x00: #UD
    install_handler(m, isa.VEC_UD, [encode(isa.OP_IRET)])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    # the first push (old sp at KSP - 4) needs W on a read-only page
    assert (m.exit_reason, m.exit_gpa, m.exit_gla) == (S.EXIT_EPT_VIOLATION, KSTACK - 4,
                                                       KSTACK - 4)
    assert (m.idt_vectoring, m.idt_vectoring_error) == (S.INJECT_VALID | isa.VEC_UD, 0)
    assert (m.pc, m.cpl) == (CODE, 3)
    assert m.counters[S.EV_TRAPS] == m.counters[S.EV_VECTOR_BASE + isa.VEC_UD] == 0


def test_triple_fault_exits():
    m = guest()
    m.regs[isa.SP] = 0x20000                            # the frame lies beyond memory
    load(m, CODE, [0])
    install_handler(m, isa.VEC_UD, [encode(isa.OP_HLT)])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    assert (m.exit_reason, m.stop_vector, m.pc) == (S.EXIT_TRIPLE_FAULT, isa.VEC_UD, CODE)


def test_interrupt_exits():
    m = guest(controls=S.CTL_EXTINT_EXITING)
    m.timer_pending, m.if_ = 1, 0                       # taken whatever IF
    load(m, CODE, [encode(isa.OP_NOP)])
    assert m.run(budget=10) == S.STOP_VM_EXIT
    assert (m.exit_reason, m.timer_pending, m.pc) == (S.EXIT_EXTERNAL_INTERRUPT, 0, CODE)
    m = guest(controls=S.CTL_INTWIN_EXITING)
    m.if_ = 1
    assert m.run(budget=0) == S.STOP_VM_EXIT            # before the stop checks
    assert m.exit_reason == S.EXIT_INTERRUPT_WINDOW


def test_injected_page_fault_is_delivered_whatever_the_bitmap():
    m = guest(bitmap=1 << isa.VEC_PF)
    m.inject, m.inject_error, m.fault_addr = S.INJECT_VALID | isa.VEC_PF, 2, 0x4444
    m.regs[isa.SP] = KSTACK
    install_handler(m, isa.VEC_PF, [encode(isa.OP_HLT)])
    assert m.run(budget=10) == S.STOP_HALT
    assert m.inject == 0 and m.fault_addr == 0x4444     # the monitor set CR2
    assert m.counters[S.EV_PAGE_FAULTS] == 1
    assert word_at(m, KSTACK - 20) == 2 and word_at(m, KSTACK - 16) == CODE
