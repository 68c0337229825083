"""Notebook 05's figures, tables and block viewer (kernel_sim.viz.translation,
kernel_sim.widgets.translation): what they show is what the monitors return, and bad input is
refused with a clear message.

Expected values are derived from the guest's behaviour on the bare machine or from the
translator's rules, not read back from the functions under test.
"""
import pytest

from kernel_sim import isa
from kernel_sim.asm import disassemble_word
from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.monitors.translator import MAX_BLOCK
from kernel_sim.viz import translation as T
from kernel_sim.widgets.translation import (
    VIEWER_COUNT,
    block_label,
    block_options,
    block_viewer,
    translated_run,
)


# ---- runs and per-iteration counts ---------------------------------------------------------------
def test_technique_run_is_cached_and_matches_a_direct_run():
    a = T.technique_run("syscall", "trap_emulate", 10)
    assert T.technique_run("syscall", "trap_emulate", 10) is a
    direct = run_technique(build_guest("syscall", count=10), "trap_emulate", strict=True)
    assert a.monitor_events == direct.monitor_events and a.strict


@pytest.mark.parametrize("call, message", [
    (lambda: T.technique_run("nosuch"), "unknown workload"),
    (lambda: T.technique_run("syscall", "emulation"), "technique must be one of"),
    (lambda: T.per_operation("syscall", counts=(40, 20)), "lo < hi"),
    (lambda: T.per_operation("syscall", counts=(0, 20)), "lo < hi"),
])
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_per_operation_is_the_difference_of_two_runs_per_iteration():
    a = run_technique(build_guest("io", count=20), "trap_emulate", strict=True).monitor_events
    b = run_technique(build_guest("io", count=40), "trap_emulate", strict=True).monitor_events
    per = T.per_operation("io")
    for reason in set(a) | set(b):
        diff = (b.get(reason, 0) - a.get(reason, 0)) / 20
        assert per.get(reason, 0) == round(diff, 2), reason


def test_emulate_matrix_rows_follow_the_guests_native_instructions():
    # on the bare machine, per iteration, the kernel of `io` executes 3 OUT and 1 IN; the strict
    # trap_emulate monitor must emulate each of them; user arithmetic (compute) none
    lo = run_technique(build_guest("io", count=50), "native")
    hi = run_technique(build_guest("io", count=100), "native")
    per = {k: (hi.opcodes.get(k, 0) - lo.opcodes.get(k, 0)) / 50 for k in ("OUT", "IN")}
    rows, names, values = T.emulate_matrix(("compute", "io"))
    assert rows == ["compute", "io"]
    io = dict(zip(names, values[1], strict=True))
    assert (io["out"], io["in"]) == (round(per["OUT"]), round(per["IN"])) == (3, 1)
    assert all(v == 0 for v in values[0])
    fig = T.emulate_heatmap(("compute", "io"))
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert list(fig.data[0].x) == [n.upper() for n in names]


def test_shadow_rows_true_faults_are_the_guests_own_page_faults():
    lo = run_technique(build_guest("pgfault", count=50), "native").traps["page_fault"]
    hi = run_technique(build_guest("pgfault", count=100), "native").traps["page_fault"]
    rows = dict(T.shadow_rows(("pgfault", "syscall")))
    columns = list(T.SHADOW_EVENTS)
    assert rows["pgfault"][columns.index("shadow:true_fault")] == (hi - lo) / 50 == 1
    assert rows["syscall"] == [0.0] * len(columns)
    table = T.shadow_table_html(("pgfault",))
    assert "<table>" in table and "hidden_fault" in table and "pgfault" in table


def test_ring_compression_figure_puts_the_vmm_in_ring_0_and_the_guest_kernel_in_ring_1():
    fig = T.ring_compression_figure()
    texts = [a.text for a in fig.layout.annotations if a.text]
    assert any("ring 0" in t and "VMM" in t for t in texts)
    assert any("ring 1" in t and "guest kernel" in t for t in texts)
    assert any("ring 0" in t and "kernel (内核)" in t for t in texts)    # the bare machine
    assert len(fig.layout.shapes) == 8                                   # 4 rings x 2 columns
    assert fig.layout.title.text


# ---- binary translation: one block -----------------------------------------------------------
@pytest.fixture(scope="module")
def bt():
    return translated_run("syscall")


def test_block_rows_show_each_guest_instruction_and_its_translation(bt):
    image = bt.image
    pc = image.symbol("trap_syscall")
    rows = T.block_rows(bt, pc)
    guest_rows = [r for r in rows if r[1] != "(monitor stub)"]
    for k, (gpc, guest, translated) in enumerate(guest_rows):
        address = pc + 4 * k
        assert gpc == f"0x{address:08x}"
        word = image.kernel.word_at(address)
        assert guest == disassemble_word(word, pc=address, symbols=image.kernel.labels)
        ins = isa.BY_OPCODE[word >> 24]
        text = translated.split(None, 1)[1]            # drop the cache address
        if ins.cls in (isa.PRIVILEGED, isa.SENSITIVE):
            assert text.startswith("callout") and "emulate" in text, (guest, translated)
        elif ins.mnemonic not in ("BNE", "BEQ", "BLT", "BGE", "BLTU", "BGEU", "JMP", "CALL",
                                  "CALLR", "RET", "JR"):
            assert text == disassemble_word(word), (guest, translated)   # copied unchanged
    assert {"STI", "PUSHF", "CLI"} <= {r[1].split()[0].upper() for r in guest_rows
                                       if "callout" in r[2]}
    stubs = [r for r in rows if r[1] == "(monitor stub)"]
    assert stubs and all(r[0] == "" and "exit" in r[2] for r in stubs)


def test_block_rows_refuse_a_non_address(bt):
    with pytest.raises(TypeError, match="guest_pc"):
        T.block_rows(bt, "trap_syscall")


def test_block_table_html_marks_callouts_and_escapes(bt):
    page = T.block_table_html(bt, bt.image.symbol("trap_syscall"))
    assert page.count("<b>") == sum("callout" in r[2] for r in T.block_rows(
        bt, bt.image.symbol("trap_syscall")))
    assert "&lt;panic_kernel_syscall&gt;" in page          # the label is escaped HTML


def test_callouts_groups_a_result_by_kind():
    result = T.technique_run("callret", "binary_translation", 10)
    got = T.callouts(result)
    assert got and all(not k.startswith("callout:") for k in got)
    assert sum(got.values()) == sum(v for k, v in result.monitor_events.items()
                                    if k.startswith("callout:"))


def test_comparison_user_code_costs_the_same_and_kernel_calls_cost_the_translator():
    rows = {(w, t): (per, ratio) for w, t, per, ratio in T.comparison_rows(("compute",
                                                                            "callret"))}
    for w in ("compute", "callret"):
        assert rows[(w, "native")][1] == 1.0
        assert rows[(w, "trap_emulate")][0] == rows[(w, "native")][0]   # direct execution
    assert rows[("compute", "binary_translation")][0] == rows[("compute", "native")][0]
    assert rows[("callret", "binary_translation")][1] > 2                # two callouts each
    fig = T.comparison_figure(("compute", "callret"))
    assert [tr.name for tr in fig.data] == list(T.TECHNIQUES)
    assert "model assumptions" in fig.layout.title.text


# ---- the block viewer ----------------------------------------------------------------------------
def test_block_label_names_the_nearest_kernel_label(bt):
    k = bt.image.kernel
    pc = bt.image.symbol("trap_syscall")
    assert block_label(k, pc) == f"0x{pc:08x} trap_syscall"
    assert block_label(k, pc + 8) == f"0x{pc + 8:08x} trap_syscall+0x8"


def test_viewer_shows_what_block_rows_returns_and_follows_its_controls():
    v = block_viewer("syscall", "trap_syscall")
    pc = v.monitor.image.symbol("trap_syscall")
    assert v.block.value == pc and v.rows == T.block_rows(v.monitor, pc)
    assert v.table.value == T.block_table_html(v.monitor, pc)
    # trap_syscall has no instruction that ends a block before MAX_BLOCK (its STI, PUSHF and
    # CLI become callouts that do not), so the translator cut it at MAX_BLOCK
    assert f"{MAX_BLOCK} guest instruction(s), 3 of them callouts (emulate)" in v.summary.value

    assert v.set(workload="callret", block="kcall_leaf")
    leaf = v.monitor.image.symbol("kcall_leaf")
    assert v.monitor is translated_run("callret") and v.block.value == leaf
    assert [r[1].split()[0] for r in v.rows] == ["addi", "ret"]
    assert "ret" in v.rows[1][2] and "callout" in v.rows[1][2]

    # the Block menu drives the table directly (as a click in the browser does)
    loop = v.monitor.image.symbol("sys_kcall_loop")
    v.block.value = loop
    assert v.rows == T.block_rows(v.monitor, loop) and "call" in v.summary.value
    assert [label for label, _ in v.block.options] == [label for label, _ in
                                                        block_options(v.monitor)]


@pytest.mark.parametrize("settings, message", [
    ({"workload": "nosuch"}, "workload must be one of"),
    ({"block": "nosuch_label"}, "no kernel symbol"),
    ({"block": 0x1234}, "no translated block starts at 0x00001234"),
    ({"block": True}, "no translated block"),
])
def test_viewer_refuses_bad_values_visibly_and_keeps_its_table(settings, message):
    v = block_viewer("syscall")
    before = (v.rows, v.table.value)
    assert v.set(**settings) is False
    assert message in v.message.value and "refused" in v.message.value
    assert (v.rows, v.table.value) == before


def test_viewer_runs_are_small():
    assert translated_run("syscall").image.count == VIEWER_COUNT


def test_the_comparison_the_notebook_describes_holds():
    """Notebook 05 reads the comparison figure in words; if a change to a monitor or to the cost
    model turns one of these around, the prose is stale and must be rewritten."""
    x = {(w, t): ratio for w, t, _per, ratio in T.comparison_rows(
        ("compute", "syscall", "io", "pgfault", "ctxswitch", "callret"))}
    assert x[("compute", "trap_emulate")] == x[("compute", "binary_translation")] == 1.0
    for w in ("syscall", "io"):                       # "many times native under both"
        assert min(x[(w, "trap_emulate")], x[(w, "binary_translation")]) > 5
    for w in ("syscall", "io", "pgfault"):            # "the translator comes out ahead"
        assert x[(w, "binary_translation")] < x[(w, "trap_emulate")], w
    for w in ("callret", "ctxswitch"):                # "the translator loses"
        assert x[(w, "binary_translation")] > x[(w, "trap_emulate")], w
    assert x[("callret", "trap_emulate")] == 1.0
