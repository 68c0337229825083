"""kernel_sim.lessons.porting: the port of the guest kernel, measured in its source."""
import pytest

from kernel_sim import guest
from kernel_sim.lessons import porting
from kernel_sim.monitors.paravirt import HYPERCALLS as MONITOR_HYPERCALLS

SMALL = """\
; a made-up kernel
.macro irq_off
.if PARAVIRT
        call pv_irq_disable   ; store to shared info
.else
        cli
.endif
.endm

boot:
        irq_off
.if PARAVIRT
        hcall_ok HC_NEW_BASEPTR
        hcall_ok HC_ENABLE_PAGING
.else
        wrcr ptbr, r1
        wrcr paging, r1
.endif
        .string "a;b"          ; the ';' in the string is not a comment
.if PARAVIRT
pv_irq_disable:
        st r2, [r1]
        ret
.endif
"""


def test_blocks_and_their_branches():
    blocks = porting.paravirt_blocks(SMALL)
    assert [(b.start, b.end, b.macro) for b in blocks] == [(3, 7, "irq_off"), (12, 18, None),
                                                          (20, 24, None)]
    assert blocks[0].paravirt == [(4, "call pv_irq_disable")] and blocks[0].native == [(6, "cli")]
    assert [c for _, c in blocks[2].paravirt] == ["pv_irq_disable:", "st r2, [r1]", "ret"]
    assert porting.strip_comment('        .string "a;b"    ; x') == '        .string "a;b"'


def test_cost_of_the_small_kernel():
    cost = porting.porting_cost(SMALL)
    # code lines: .macro, call, cli, .endm, boot:, irq_off, 2 hcall_ok, 2 wrcr, .string,
    # label, st, ret = 14 (the .if/.else/.endif lines and comments are not counted)
    assert (cost.code_lines, cost.paravirt_lines, cost.native_lines) == (14, 6, 3)
    assert cost.changed_lines == 9 and cost.percent == pytest.approx(900 / 14)
    assert (cost.blocks, cost.macro_blocks) == (3, 1)
    assert porting.macro_uses(SMALL) == {"irq_off": 1}


def test_replacements_pair_instructions_in_order():
    reps = porting.replacements(SMALL)
    assert [(r.native, r.paravirt, r.hypercalls) for r in reps] == [
        ("cli", "call pv_irq_disable", ()),
        ("wrcr ptbr, r1", "hypercall new_baseptr", ("new_baseptr",)),
        ("wrcr paging, r1", "hypercall enable_paging", ("enable_paging",))]
    assert porting.replaced_by("WRCR ptbr", SMALL) == ["new_baseptr"]
    assert porting.replaced_by("cli", SMALL) == []
    with pytest.raises(ValueError, match="no 'hlt'"):
        porting.replaced_by("hlt", SMALL)


@pytest.mark.parametrize("broken, message", [
    (".endif\n", "without .if"), (".if PARAVIRT\n nop\n", "never closed")])
def test_unbalanced_conditionals_are_refused(broken, message):
    with pytest.raises(ValueError, match=message):
        porting.paravirt_blocks(broken)


def test_the_real_kernel():
    cost = porting.porting_cost()
    assert 0 < cost.changed_lines < cost.code_lines < cost.total_lines
    # the PARAVIRT branches hold no privileged instruction: that is the point of the port
    from kernel_sim import isa
    for b in porting.paravirt_blocks():
        for _, code in b.paravirt:
            ins = isa.BY_MNEMONIC.get(code.split()[0].upper())
            assert ins is None or not ins.privileged, code
    assert porting.replaced_by("iret") == ["iret"]
    assert "mmu_update" in porting.routine_hypercalls()["pv_queue_pte"]


def test_the_hypercall_table_is_the_code_s():
    rows = porting.hypercall_table()
    assert [(n, name) for n, name, _, _ in rows] == sorted(
        (n, name) for name, n in guest.HYPERCALLS.items())
    assert guest.HYPERCALLS == MONITOR_HYPERCALLS
    by_name = {name: (args, native) for _, name, args, native in rows}
    assert by_name["new_baseptr"][1] == "wrcr ptbr, r1"
    assert "pairs" in by_name["mmu_update"][0] and "set_pte" in by_name["mmu_update"][1]
    assert "<table>" in porting.hypercall_table_html()


def test_masking_counts_read_the_runs():
    class Run:
        def __init__(self, opcodes, events):
            self.opcodes, self.monitor_events = opcodes, events
    native = Run({"CLI": 3, "STI": 2, "PUSHF": 1, "POPF": 1, "ADD": 50}, {})
    pv = Run({"ADD": 60, "VMCALL": 5}, {"hypercall:event_check": 2, "hypercall:iret": 3})
    assert porting.masking_counts(native, pv) == {"native": 7, "paravirt_masking": 0,
                                                  "event_check": 2}


def test_the_port_is_measured_over_every_file_of_the_split_kernel():
    files = [name for name, _ in porting.kernel_sources()]
    assert files[0] == "kernel.s" and "kernel/macros.s" in files and "kernel/pv.s" in files
    assert "abi.s" not in files                    # generated, not part of the port
    blocks = porting.paravirt_blocks()
    by_file = {b.file for b in blocks}
    assert {"kernel/macros.s", "kernel/boot.s", "kernel/pv.s"} <= by_file
    assert all(b.macro for b in blocks if b.file == "kernel/macros.s")
    # the support routines are one block of their own file, PARAVIRT only
    (pv,) = [b for b in blocks if b.file == "kernel/pv.s"]
    assert pv.native == [] and any(code == "pv_queue_pte:" for _, code in pv.paravirt)
    # the same totals as summing the files one by one
    cost = porting.porting_cost()
    parts = [porting.porting_cost(text) for _, text in porting.kernel_sources()]
    assert cost.changed_lines == sum(p.changed_lines for p in parts)
    assert cost.code_lines == sum(p.code_lines for p in parts)
    assert "kernel/vm.s:" in porting.replacements_html()
