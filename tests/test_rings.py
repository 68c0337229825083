"""Behaviour of the protection-ring experiment (kernel_sim.lessons.rings), its figures and its widget."""
from __future__ import annotations


import pytest

from kernel_sim import isa
from kernel_sim.asm import AsmError
from kernel_sim.lessons.rings import (
    KSTACK,
    PROGRAMS,
    TRAP_KINDS,
    USER_BASE,
    USER_STACK,
    build,
    compare_rings,
    privileged_instructions,
    probe,
    ring_table_html,
    syscall_path,
)

SENSITIVE = [i.mnemonic for i in isa.INSTRUCTIONS if i.cls == isa.SENSITIVE]


def _user_mnemonics(name):
    """Mnemonics of a demo program's words, decoded with the ISA table (no disassembler)."""
    image = build(PROGRAMS[name], 3)
    out = []
    for pc in range(USER_BASE, image.user_end, 4):
        ins = isa.BY_OPCODE.get(image.program.word_at(pc) >> 24)
        out.append(ins.mnemonic if ins else None)
    return out


# ---- privileged instructions ---------------------------------------------------------------
def test_privileged_mix_contains_privileged_instructions_per_isa_table():
    priv = [m for m in _user_mnemonics("privileged mix")
            if m and isa.BY_MNEMONIC[m].cls == isa.PRIVILEGED]
    assert len(priv) >= 5
    assert privileged_instructions("privileged mix") == priv


@pytest.mark.parametrize("ring", [1, 2, 3])
def test_privileged_instructions_raise_one_gp_each_outside_ring_0(ring):
    expected = len(privileged_instructions("privileged mix"))
    p = probe("privileged mix", ring)
    assert p.traps["#GP"] == expected
    assert [f.kind for f in p.faults] == ["#GP"] * expected
    faulted = [f.instruction.split()[0].upper() for f in p.faults]
    assert faulted == privileged_instructions("privileged mix")
    assert p.result.events["privilege_faults"] == expected
    assert p.exit_status == 0 and p.console == ""     # OUT was refused, exit() ran


def test_privileged_instructions_run_in_ring_0_and_hlt_stops_the_machine():
    p = probe("privileged mix", 0)
    assert p.traps["#GP"] == 0 and p.faults == []
    assert p.console == "A"                             # OUT reached the console directly
    assert p.stop == "halt" and p.exit_status is None   # HLT stopped it before exit()


def test_every_privileged_instruction_of_the_isa_faults_in_ring_3():
    # One program per privileged instruction that can appear in a user program.
    for ins in isa.INSTRUCTIONS:
        if ins.cls != isa.PRIVILEGED or ins.mnemonic in ("IRET", "SYSRET"):
            continue
        operand = {"none": "", "a": " r1", "in": " r1, ticks", "out": " console, r1",
                   "rdcr": " r1, scratch", "wrcr": " scratch, r1"}[ins.fmt]
        p = probe(f"        {ins.mnemonic.lower()}{operand}\n        nop\n", 3)
        assert p.traps["#GP"] == 1, ins.mnemonic
        assert p.faults[0].pc == USER_BASE and p.faults[0].line == 1


def test_fault_log_names_instruction_and_user_source_line():
    p = probe("privileged mix", 3)
    first = p.faults[0]
    assert first.instruction == "cli"
    assert PROGRAMS["privileged mix"].splitlines()[first.line - 1].strip().startswith("cli")


# ---- sensitive but unprivileged --------------------------------------------------------------
@pytest.mark.parametrize("ring", [0, 1, 2, 3])
def test_sensitive_instructions_do_not_fault_without_strict(ring):
    p = probe("sensitive but unprivileged", ring)
    assert p.faults == [] and p.traps["#GP"] == 0
    assert p.console == str(ring)        # GETCPL told the program its real ring


def test_popf_in_ring3_ignores_interrupt_flag_silently():
    p = probe("sensitive but unprivileged", 3)
    assert p.result.events["popf_ignored"] == 1
    assert probe("sensitive but unprivileged", 0).result.events["popf_ignored"] == 0


def test_sensitive_instructions_fault_in_ring_3_with_strict_isa():
    expected = [m for m in _user_mnemonics("sensitive but unprivileged") if m in SENSITIVE]
    p = probe("sensitive but unprivileged", 3, strict=True)
    assert p.traps["#GP"] == len(expected) == 4
    assert [f.instruction.split()[0].upper() for f in p.faults] == expected
    assert probe("sensitive but unprivileged", 0, strict=True).faults == []


# ---- other faults, the kernel's own bookkeeping -------------------------------------------------
@pytest.mark.parametrize("ring", [0, 3])
def test_divide_by_zero_and_invalid_opcode_fault_in_every_ring(ring):
    p = probe("divide by zero", ring)
    assert p.traps["#DE"] == 2 and p.traps["#UD"] == 1 and p.traps["#GP"] == 0


@pytest.mark.parametrize("name", list(PROGRAMS))
@pytest.mark.parametrize("strict", [False, True])
def test_kernel_counters_match_simulator_counters(name, strict):
    for ring in range(4):
        p = probe(name, ring, strict)
        assert p.kernel_traps == p.traps
        vec = {k: p.result.traps.get(isa.VECTOR_KEYS[v], 0) for k, v in TRAP_KINDS.items()}
        assert vec == p.traps
        assert [(pc, kind) for pc, kind in p.kernel_log] == [(f.pc, f.kind) for f in p.faults]


def test_system_calls_print_hi_in_every_ring():
    for ring in range(4):
        p = probe("system calls", ring)
        assert p.console == "hi\n" and p.traps["syscall"] == 2 and p.exit_status == 0


def test_sysret_is_used_for_ring_3_and_iret_for_inner_rings():
    r3 = probe("system calls", 3).result.events
    r1 = probe("system calls", 1).result.events
    assert r3["sysret"] == 1          # the write call returned with SYSRET
    assert r1["sysret"] == 0 and r1["iret"] == 2   # the boot IRET and the write call's IRET


def test_program_falling_off_its_end_exits_through_the_epilogue():
    p = probe("        movi r1, 1\n        movi r2, 2\n", 3)
    assert p.exit_status == 0 and p.stop == "halt" and p.traps["syscall"] == 1


def test_assembly_error_in_user_program_reports_user_line():
    with pytest.raises(AsmError) as err:
        probe("        movi r1, 1\n        frob r2\n", 3)
    assert err.value.line == 2 and err.value.filename == "user program"


def test_probe_refuses_bad_ring_and_unknown_program():
    with pytest.raises(ValueError, match="ring must be 0, 1, 2 or 3"):
        probe("privileged mix", 4)
    with pytest.raises(ValueError, match="unknown program"):
        probe("no such program", 3)


def test_ring_table_marks_faulting_instructions_per_ring():
    probes = compare_rings("privileged mix")
    table = ring_table_html(probes)
    assert table.count("#GP") == 3 * len(privileged_instructions("privileged mix"))


# ---- the system-call path ---------------------------------------------------------------------
def test_syscall_path_goes_from_ring_3_to_0_and_back_to_3():
    path = syscall_path()
    rings = [s.ring for s in path.steps]
    assert rings[0] == 3 and rings[-1] == 3
    first0 = rings.index(0)
    back = rings.index(3, first0)
    assert set(rings[first0:back]) == {0}
    assert path.steps[first0].instruction == "syscall"
    assert path.return_instruction == "sysret" and path.steps[back].instruction == "sysret"
    assert path.kernel_instructions == back - first0


def test_syscall_path_switches_sp_to_ksp_and_pushes_a_frame():
    path = syscall_path()
    trap_step = next(s for s in path.steps if s.event.startswith("trap"))
    assert path.ksp == KSTACK
    assert trap_step.sp == KSTACK - 20                  # five words pushed on the kernel stack
    assert path.user_sp == USER_STACK
    assert path.frame == {"error": 0, "pc": trap_step.pc + 4, "ring": 3,
                          "flags": isa.FLAG_IF, "sp": USER_STACK}
    assert path.trap[2] == isa.VEC_SYSCALL and path.trap[1] == trap_step.pc + 4
    assert path.steps[-1].sp == USER_STACK              # SYSRET restored the user's sp
    assert path.handler == build(PROGRAMS["system calls"], 3).program.symbols["k_syscall"]


# ---- figures ---------------------------------------------------------------------------------
def test_figures_have_titles_and_axis_titles_with_units():
    from kernel_sim.viz.rings import ring_diagram, syscall_path_figure, trap_bars, traps_by_ring
    bars = trap_bars(probe("privileged mix", 3))
    assert list(bars.data[0].y) == [probe("privileged mix", 3).traps[k] for k in TRAP_KINDS]
    assert "ring 3" in bars.layout.title.text
    assert bars.layout.yaxis.title.text == "count (traps)"
    assert "保护环" in ring_diagram().layout.title.text
    assert traps_by_ring(compare_rings("divide by zero")).layout.xaxis.title.text
    path_fig = syscall_path_figure(syscall_path())
    assert "system call" in path_fig.layout.title.text


# ---- the widget --------------------------------------------------------------------------------
@pytest.fixture
def explorer():
    from kernel_sim.widgets.rings import ring_explorer
    return ring_explorer()


def test_widget_updates_bars_to_api_values_for_new_setting(explorer):
    explorer.program.value = "divide by zero"          # the observers run synchronously
    explorer.ring.value = 1
    expected = probe("divide by zero", 1)
    assert list(explorer.fig.data[0].y) == [expected.traps[k] for k in TRAP_KINDS]
    assert explorer.result.traps == expected.traps
    assert "ring 1" in explorer.fig.layout.title.text and "div" in explorer.table.value


def test_widget_strict_checkbox_makes_sensitive_instructions_trap(explorer):
    explorer.set(program="sensitive but unprivileged", ring=3)
    assert explorer.result.traps["#GP"] == 0
    explorer.strict.value = True
    assert list(explorer.fig.data[0].y) == [probe("sensitive but unprivileged", 3, True).traps[k]
                                            for k in TRAP_KINDS]


def test_widget_refuses_invalid_ring_with_visible_message(explorer):
    before = list(explorer.fig.data[0].y)
    assert explorer.set(ring=7) is False
    assert "ring must be 0, 1, 2 or 3" in explorer.message.value
    assert list(explorer.fig.data[0].y) == before and explorer.ring.value == 3
    assert explorer.set(program="nonsense") is False
    assert "unknown program" in explorer.message.value
    from traitlets import TraitError
    with pytest.raises(TraitError):
        explorer.ring.value = 7        # the dropdown itself refuses values not in its options
    assert explorer.set(ring=0) is True and explorer.message.value == ""


def test_without_paging_a_ring_3_program_can_corrupt_kernel_counters_and_probe_notices():
    # Rings protect instructions, not memory: ST into the kernel's #GP counter is not refused.
    forged = "        movi r1, 99\n        movi r2, 0\n        st r1, [r2 + 0x834]\n"
    with pytest.raises(RuntimeError, match="kernel's memory"):
        probe(forged, 3)
