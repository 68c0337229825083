"""The instruction table is the single source of truth: the kernels read it, they keep no copies
(tests/test_jit.py checks that no jitted module redefines a constant of isa.py or state.py)."""
from kernel_sim import cpu, isa
from kernel_sim import state as S


def test_monitor_opcodes_are_reserved_and_not_implemented_by_the_cpu():
    monitor = [i for i in isa.INSTRUCTIONS if i.cls == isa.MONITOR]
    assert {i.mnemonic for i in monitor} == {"VMCALL", "CALLOUT"}
    for ins in monitor:
        assert ins.opcode in isa.RESERVED_MONITOR_OPCODES
        assert ins not in isa.MACHINE_INSTRUCTIONS
    # they always leave the guest (#UD), so they are not Popek-Goldberg violations
    assert not {"VMCALL", "CALLOUT"} & set(isa.popek_goldberg_violations())


def test_cr_index_follows_the_control_register_table():
    assert [cpu.cr_index(n) for n in range(isa.NUM_CRS)] == list(S.CR_TO_CTRL)
    assert cpu.cr_index(isa.NUM_CRS) == -1 and cpu.cr_index(-1) == -1
    assert len(S.CR_TO_CTRL) == isa.NUM_CRS == len(isa.CR_NAMES)


def test_privileged_opcodes_form_the_range_the_cpu_checks():
    privileged = sorted(i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.PRIVILEGED)
    assert privileged == list(range(isa.OP_SYSRET, isa.OP_TLBFLUSH + 1))
    sensitive = sorted(i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.SENSITIVE)
    assert sensitive == list(range(isa.OP_PUSHF, isa.OP_RDTVB + 1))


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
