"""kernel_sim.lessons.popek_goldberg (notebook 03): the class table, Theorem 1, the demonstration kernel,
the course's guest OS on both ISAs, Robin and Irvine's table and the explorer's verdict line.

The class table's "traps outside ring 0" columns are checked against the machine itself (each
instruction is run in ring 3); the demonstration is checked against what the bare machine
prints, worked out by hand from its source.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from kernel_sim import isa
from kernel_sim.lessons import popek_goldberg as pg
from kernel_sim.runner import run_source

# one operand list per format, for running an instruction on its own
OPERANDS = {"none": "", "a": "r1", "ab": "r1, r2", "abc": "r1, r2, r3", "abi": "r1, r2, 1",
            "abu": "r1, r2, 1", "abs": "r1, r2, 1", "ai": "r1, 1", "au": "r1, 1",
            "mem": "r1, [sp + 0]", "br": "r1, r2, spin", "j": "spin", "in": "r1, console",
            "out": "console, r1", "rdcr": "r1, scratch", "wrcr": "scratch, r1", "u": "1"}


def traps_in_ring3(ins: isa.Instruction, strict: bool) -> bool:
    """Run ``ins`` alone in ring 3 (then spin): does the CPU trap on it?"""
    source = (f"        li   sp, 0x8000\n        push r0\n"
              f"        {ins.mnemonic.lower()} {OPERANDS[ins.fmt]}\nspin:   jmp  spin\n")
    r = run_source(source, ring=3, strict=strict, count=50)
    return r.stop == "unhandled_trap"


# ==== the class table and Theorem 1 ============================================================
def test_class_table_has_every_instruction_once_in_isa_order():
    rows = pg.class_table()
    assert [r["mnemonic"] for r in rows] == [i.mnemonic for i in isa.INSTRUCTIONS]
    for r in rows:
        ins = isa.BY_MNEMONIC[r["mnemonic"]]
        assert r["cls"] == ins.cls and r["privileged"] == ins.privileged
        assert r["sensitivity"] == (ins.sensitivity or "-")


NOT_INNOCUOUS = [i for i in isa.INSTRUCTIONS if i.cls != isa.INNOCUOUS]
SAMPLE_INNOCUOUS = [isa.BY_MNEMONIC[m] for m in ("ADD", "LD", "ST", "PUSH", "JMP", "MOVI")]


@pytest.mark.parametrize("ins", NOT_INNOCUOUS + SAMPLE_INNOCUOUS, ids=lambda i: i.mnemonic)
def test_the_trap_columns_are_what_the_machine_does_in_ring_3(ins):
    row = next(r for r in pg.class_table() if r["mnemonic"] == ins.mnemonic)
    assert row["traps"] == traps_in_ring3(ins, strict=False)
    assert row["traps_strict"] == traps_in_ring3(ins, strict=True)


def test_theorem_1_fails_on_the_default_isa_and_holds_on_the_strict_one():
    loose, strict = pg.theorem1(strict=False), pg.theorem1(strict=True)
    # the four instructions the ISA documents as sensitive but unprivileged
    assert loose.violations == ("GETCPL", "POPF", "PUSHF", "RDTVB")
    assert set(loose.violations) == set(isa.popek_goldberg_violations(strict=False))
    assert not loose.holds and "fails" in loose.text()
    assert strict.holds and strict.violations == () and "holds" in strict.text()
    # every privileged instruction is sensitive, and both ISAs have the same sensitive set
    privileged = {i.mnemonic for i in isa.INSTRUCTIONS if i.privileged}
    assert privileged <= set(loose.sensitive) and loose.sensitive == strict.sensitive
    with pytest.raises(TypeError, match="strict"):
        pg.theorem1("yes")


def test_class_table_html_marks_exactly_the_violations_in_bold():
    text = pg.class_table_html()
    for m in ("PUSHF", "POPF", "GETCPL", "RDTVB"):
        assert f"<b>{m}</b>" in text
    for m in ("CLI", "SYSCALL", "HLT"):
        assert f"<td>{m}</td>" in text
    assert text.count("<tr>") == 1 + 1 + len(NOT_INNOCUOUS)   # head, innocuous, the rest
    assert pg.class_table_html(collapse_innocuous=False).count("<tr>") == \
        1 + len(isa.INSTRUCTIONS)


# ==== the demonstration kernel =================================================================
@pytest.fixture(scope="module")
def demo():
    return pg.compare_isas(pg.demo_image(), "demo")


def test_demo_diverges_on_the_non_strict_isa(demo):
    # by hand: GETCPL prints '0' in ring 0, three timer interrupts print 'T', then '.'
    assert demo.native.console == "0TTT." and demo.native.stop == "halt"
    assert demo.native.registers[6] == 3
    # in ring 1 GETCPL says 1; POPF cannot set the virtual IF again, so HLT stops the machine
    loose = demo.loose
    assert loose.console == "1" and loose.stop == "halt" and loose.registers[6] == 0
    assert not demo.equivalent(strict=False) and not demo.user_equivalent(strict=False)
    assert "POPF x1" in " ".join(loose.notes) and "GETCPL x1" in " ".join(loose.notes)
    assert "emulate:popf" not in loose.monitor_events


def test_demo_heals_on_the_strict_isa(demo):
    assert demo.native_strict.state_digest == demo.native.state_digest   # ring 0: no traps
    assert demo.strict.console == "0TTT." and demo.strict.notes == []
    assert demo.equivalent(strict=True) and demo.user_equivalent(strict=True)
    for m in ("popf", "pushf", "getcpl"):
        assert demo.strict.monitor_events[f"emulate:{m}"] == 1
    diff = {k: (a, b) for k, a, b in demo.event_differences()}
    assert diff["emulate:popf"] == (0, 1) and diff["reflect:timer_interrupt"] == (0, 3)
    assert all(a != b for a, b in diff.values())


def test_demo_report_shows_both_runs_and_the_differences(demo):
    rows = demo.rows()
    assert [r["run"] for r in rows] == ["native", "trap_emulate, non-strict ISA",
                                        "trap_emulate, strict ISA"]
    assert [r["state_same"] for r in rows[1:]] == [False, True]
    page = demo._repr_html_()
    assert "<b>NO</b>" in page and "emulate:popf" in page and "POPF x1" in page


# ==== the course's guest OS ====================================================================
def test_guest_os_keeps_user_output_but_not_kernel_state_without_a_strict_isa():
    c = pg.compare_workload("syscall", count=50)
    assert c.user_equivalent(strict=False) and not c.equivalent(strict=False)
    assert c.equivalent(strict=True) and c.user_equivalent(strict=True)
    # each getpid call passes one irq_save/irq_restore pair; boot and exit add a few more
    popf = c.strict.monitor_events["emulate:popf"]
    assert popf >= 50 and popf == c.strict.monitor_events["emulate:pushf"]
    assert c.loose.monitor_events.get("emulate:popf", 0) == 0
    # natively the guest executes exactly the POPFs the strict monitor emulates
    assert c.native.opcodes["POPF"] == popf


def test_small_kernels_and_their_equivalence():
    with pytest.raises(ValueError, match="unknown small kernel"):
        pg.small_kernel_image("nope")
    for name in pg.SMALL_KERNELS:
        c = pg.compare_isas(pg.small_kernel_image(name), name)
        assert c.native.stop == "halt" and c.equivalent(strict=True), name
    # runs no sensitive instruction unemulated: no notes, equivalent
    assert pg.compare_isas(pg.small_kernel_image("cli/sti")).loose.notes == []
    assert pg.equivalent_without_strict("cli/sti")


def test_events_per_operation_refuses_bad_counts():
    for bad in ((20, 10), (0, 5), (5, 5), (1.5, 3)):
        with pytest.raises(ValueError, match="counts"):
            pg.events_per_operation("syscall", counts=bad)


# ==== Robin and Irvine =========================================================================
FACTS_LIST = {"SGDT", "SIDT", "SLDT", "SMSW", "PUSHF", "POPF", "LAR", "LSL", "VERR", "VERW",
              "STR"}


def test_robin_irvine_table():
    rows = pg.robin_irvine_rows()
    names = [r["mnemonic"] for r in rows]
    assert len(names) == len(set(names)) == 18          # one row per mnemonic form
    assert pg.ROBIN_IRVINE_PAPER_COUNT == 17            # the paper's own count
    assert FACTS_LIST <= set(names)
    for form in ("POP", "PUSH", "CALL", "JMP", "INT", "RET", "MOV"):
        assert any(n.startswith(form) for n in names), form
    groups = {r["group"] for r in rows}
    assert groups == {"sensitive register instruction", "protection system reference"}
    register = {r["mnemonic"] for r in rows if r["group"] == "sensitive register instruction"}
    assert register == {"SGDT", "SIDT", "SLDT", "SMSW", "PUSHF", "POPF"}
    # the toy ISA models each of its own violations on one of these Pentium instructions
    toys = {r["toy"] for r in rows} - {"-"}
    assert toys == set(isa.popek_goldberg_violations(strict=False))
    page = pg.robin_irvine_html()
    assert page.count("<tr>") == 19 and "17 as the paper counts" in page


def test_the_three_properties():
    assert [p[0] for p in pg.PROPERTIES] == ["equivalence", "resource control", "efficiency"]


# ==== the explorer's verdict line ==============================================================
def test_explorer_says_whether_the_guest_os_state_matches_native():
    from kernel_sim.widgets.techniques import same_kernel_state, technique_explorer
    e = technique_explorer(workload="syscall", techniques=["trap_emulate"], strict=False,
                           count=50)
    assert list(e.technique.options) == ["trap_emulate"]
    assert e.state_matches is False
    assert "same user-visible result" in e.summary.value
    assert "state digest) differs from native" in e.summary.value
    assert e.set(strict=True)
    assert e.state_matches is True and "also the same as native" in e.summary.value
    paravirt = SimpleNamespace(technique="paravirt", state_digest="a")
    assert same_kernel_state(paravirt, SimpleNamespace(state_digest="b")) is None
