"""The monitor framework: registry, cost presets, images, the native baseline, result tables."""
import pytest

from kernel_sim.asm import assemble
from kernel_sim.costs import CPU_PRESETS, technique_costs
from kernel_sim.monitors import ProgramImage, monitor_class, run_technique
from kernel_sim.monitors.base import Layout, MonitorError
from kernel_sim.results import TechniqueResult

HELLO = """
    movi r1, 72         ; 'H'
    out console, r1
    movi r1, 105        ; 'i'
    out console, r1
    hlt
"""


def image(source=HELLO, **kw):
    return ProgramImage.from_program(assemble(source), ram_size=64 << 10, **kw)


def test_native_technique_runs_the_image_and_counts_no_monitor_events():
    r = run_technique(image(), "native")
    assert r.stop == "halt" and r.console == "Hi"
    assert r.instructions == 5 and r.monitor_events == {}
    assert r.cycles == r.cycles_by_category["guest"] > 0


def test_native_technique_gives_the_same_digest_as_a_plain_machine_run():
    from kernel_sim.runner import run_source
    plain = run_source(HELLO, memory_size=64 << 10)
    assert run_technique(image(), "native").state_digest == plain.state_digest


def test_unknown_technique_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'native'"):
        monitor_class("natve")


def test_cpu_presets_refuse_unknown_names_and_bad_overrides():
    with pytest.raises(ValueError, match="did you mean 'nehalem'"):
        technique_costs("nehalm")
    with pytest.raises(ValueError, match="unknown monitor cost"):
        technique_costs("modern", {"no_such_cost": 3})
    with pytest.raises(ValueError, match="non-negative"):
        technique_costs("modern", {"vm_exit": -1})


def test_vm_exit_cost_falls_across_cpu_generations():
    exits = [technique_costs(cpu)["vm_exit"] for cpu in CPU_PRESETS]
    assert list(CPU_PRESETS) == ["first-vtx", "nehalem", "modern"]
    assert exits == sorted(exits, reverse=True) and exits[0] > exits[-1]
    assert not CPU_PRESETS["first-vtx"]["ept"] and CPU_PRESETS["nehalem"]["ept"]


def test_a_monitor_runs_its_guest_once_and_checks_the_count():
    mon = monitor_class("native")(image())
    with pytest.raises(ValueError):
        mon.run(0)
    mon.run(100)
    with pytest.raises(MonitorError):
        mon.run(100)


def test_image_from_program_refuses_a_program_larger_than_ram():
    with pytest.raises(ValueError, match="does not fit"):
        ProgramImage.from_program(assemble(".org 0x20000\nhlt\n"), ram_size=64 << 10)


def test_layout_translates_only_addresses_inside_the_guest():
    lay = Layout(guest_base=0x200000, guest_size=0x100000, host_size=0x300000)
    assert lay.hpa(0x1234) == 0x201234
    with pytest.raises(MonitorError):
        lay.hpa(0x100000)


def test_exit_table_shares_and_averages_follow_the_counts():
    r = TechniqueResult(stop="halt", pc=0, cpl=0, instructions=0, cycles=0, events={},
                        traps={}, opcodes={}, console="", state_digest="", user_digest="",
                        monitor_events={"a": 3, "b": 1}, event_cycles={"a": 300, "b": 700})
    rows = {name: rest for name, *rest in r.exit_table_rows()}
    assert rows["a"] == [3, 75.0, 30.0, 100.0] and rows["b"] == [1, 25.0, 70.0, 700.0]
    text = r.exit_table()
    assert "Samples%" in text and "Total Samples:4" in text
    assert text.index(" a ") < text.index(" b ")      # most frequent first


# ---- what techniques declare (monitors/base.Needs): the rest of the system asks the class ------
def test_a_refusal_is_the_message_the_constructor_raises():
    from kernel_sim.guest import build_guest
    from kernel_sim.monitors import techniques_for
    for cpu in CPU_PRESETS:
        for name in techniques_for("modern"):
            cls = monitor_class(name)
            refused = cls.refusal(cpu)
            if refused is None:
                continue
            with pytest.raises(MonitorError) as exc:
                cls(build_guest("syscall", count=2, **cls.guest_options()), cpu=cpu)
            assert str(exc.value) == refused
    assert monitor_class("hw_ept").refusal("first-vtx") and "EPT" in \
        monitor_class("hw_ept").refusal("first-vtx")
    assert "hw_ept" not in techniques_for("first-vtx") and "hw_ept" in techniques_for("nehalem")
    assert monitor_class("hw_shadow").refusal("first-vtx", vpid=True)
    assert monitor_class("hw_shadow").refusal("first-vtx", vpid=False) is None
    with pytest.raises(ValueError, match="unknown CPU preset"):
        monitor_class("native").refusal("pentium")


def test_each_technique_gets_the_guest_build_it_declares():
    from kernel_sim.guest import build_guest
    from kernel_sim.monitors import techniques_for
    for name in techniques_for("modern"):
        cls = monitor_class(name)
        image = build_guest("syscall", count=2, **cls.guest_options())
        assert image.paravirt == (cls.needs.guest_build == "paravirt")
        assert run_technique(image, name, count=200_000).stop == "halt"
    pv = monitor_class("paravirt")
    assert pv.guest_options(batch=4) == {"paravirt": True, "batch": 4}
    with pytest.raises(ValueError, match="batch applies only"):
        monitor_class("trap_emulate").guest_options(batch=4)


def test_only_a_technique_that_declares_a_strict_choice_runs_on_the_strict_isa():
    from kernel_sim.monitors import available_techniques
    for name in available_techniques():
        cls = monitor_class(name)
        assert cls.strict_for(False) is False
        assert cls.strict_for(True) is (cls.needs.strict_isa == "choice")
    assert monitor_class("trap_emulate").strict_for(True)
