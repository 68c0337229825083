"""The instruction table is the single source of truth; the kernels' copies must agree with it."""
from kernel_sim import cpu, isa, mmu


def test_cpu_opcode_constants_equal_the_table():
    for ins in isa.MACHINE_INSTRUCTIONS:
        assert getattr(cpu, "OP_" + ins.mnemonic) == ins.opcode, ins.mnemonic


def test_monitor_opcodes_are_reserved_and_not_implemented_by_the_cpu():
    monitor = [i for i in isa.INSTRUCTIONS if i.cls == isa.MONITOR]
    assert {i.mnemonic for i in monitor} == {"VMCALL", "CALLOUT"}
    for ins in monitor:
        assert ins.opcode in isa.RESERVED_MONITOR_OPCODES
        assert ins not in isa.MACHINE_INSTRUCTIONS
    # the CPU knows VMCALL only to exit with it in VMX non-root operation; CALLOUT not at all
    assert cpu.OP_VMCALL == isa.BY_MNEMONIC["VMCALL"].opcode
    assert not hasattr(cpu, "OP_CALLOUT")
    # they always leave the guest (#UD), so they are not Popek-Goldberg violations
    assert not {"VMCALL", "CALLOUT"} & set(isa.popek_goldberg_violations())


def test_kernel_copies_of_isa_constants_agree():
    assert (cpu.VEC_DE, cpu.VEC_UD, cpu.VEC_GP, cpu.VEC_PF, cpu.VEC_TIMER, cpu.VEC_SYSCALL) == (
        isa.VEC_DE, isa.VEC_UD, isa.VEC_GP, isa.VEC_PF, isa.VEC_TIMER, isa.VEC_SYSCALL)
    assert (cpu.PORT_CONSOLE, cpu.PORT_TIMER, cpu.PORT_TICKS) == (
        isa.PORT_CONSOLE, isa.PORT_TIMER, isa.PORT_TICKS)
    assert (cpu.PORT_BLK_SECTOR, cpu.PORT_BLK_BUFFER, cpu.PORT_BLK_COMMAND, cpu.PORT_BLK_SIZE,
            cpu.BLK_READ, cpu.BLK_WRITE) == (isa.PORT_BLK_SECTOR, isa.PORT_BLK_BUFFER,
                                             isa.PORT_BLK_COMMAND, isa.PORT_BLK_SIZE,
                                             isa.BLK_READ, isa.BLK_WRITE)
    assert cpu.FLAG_IF == isa.FLAG_IF and cpu.NO_TVB == isa.NO_TVB and cpu.SP == isa.SP
    assert (mmu.PTE_P, mmu.PTE_W, mmu.PTE_U, mmu.PTE_A, mmu.PTE_D) == (
        isa.PTE_P, isa.PTE_W, isa.PTE_U, isa.PTE_A, isa.PTE_D)
    assert (mmu.PF_PRESENT, mmu.PF_WRITE, mmu.PF_USER, mmu.PF_FETCH) == (
        isa.PF_PRESENT, isa.PF_WRITE, isa.PF_USER, isa.PF_FETCH)
    assert [cpu.cr_index(n) for n in range(isa.NUM_CRS)] == list(
        __import__("kernel_sim.state", fromlist=["CR_TO_CTRL"]).CR_TO_CTRL)
    assert cpu.cr_index(isa.NUM_CRS) == -1


def test_privileged_opcodes_form_the_range_the_cpu_checks():
    privileged = sorted(i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.PRIVILEGED)
    assert privileged == list(range(cpu.OP_SYSRET, cpu.OP_TLBFLUSH + 1))
    sensitive = sorted(i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.SENSITIVE)
    assert sensitive == list(range(cpu.OP_PUSHF, cpu.OP_RDTVB + 1))


def test_every_privileged_instruction_is_sensitive():
    assert all(i.sensitive for i in isa.INSTRUCTIONS if i.privileged)


def test_popek_goldberg_fails_on_the_default_isa_and_holds_when_strict():
    assert sorted(isa.popek_goldberg_violations()) == ["GETCPL", "POPF", "PUSHF", "RDTVB"]
    assert isa.popek_goldberg_violations(strict=True) == []


def test_opcode_zero_and_monitor_range_are_undefined():
    assert 0 not in isa.BY_OPCODE
    named = [isa.BY_OPCODE[op] for op in isa.RESERVED_MONITOR_OPCODES if op in isa.BY_OPCODE]
    assert named and all(ins.cls == isa.MONITOR for ins in named)


def test_classification_rows_cover_every_instruction():
    rows = isa.instruction_classes()
    assert [r["mnemonic"] for r in rows] == [i.mnemonic for i in isa.INSTRUCTIONS]
    assert {r["cls"] for r in rows} == set(isa.CLASSES)


def test_encode_decode_round_trip():
    word = isa.encode(isa.OP_ADDI, 3, 4, -2)
    assert isa.decode(word) == (isa.OP_ADDI, 3, 4, 0xFFFE)
    assert isa.sign16(0xFFFE) == -2 and isa.sign24(0x800000) == -(1 << 23)
