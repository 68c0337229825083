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


def test_an_image_of_the_other_build_is_refused_by_the_class_and_the_constructor():
    """Each technique declares the build it runs (needs.guest_build); an image of the other
    build is refused before construction (refusal(image=...)) and by the constructor, with a
    message that names the build and the techniques that do run that image."""
    from kernel_sim.guest import build_guest
    from kernel_sim.monitors import available_techniques
    builds = {"plain": build_guest("syscall", count=2),
              "paravirt": build_guest("syscall", count=2, paravirt=True)}
    for name in available_techniques():
        cls = monitor_class(name)
        other = "plain" if cls.needs.guest_build == "paravirt" else "paravirt"
        assert cls.refusal("modern", image=builds[cls.needs.guest_build]) is None
        message = cls.refusal("modern", image=builds[other])
        assert message is not None and "PARAVIRT=1" in message
        runners = [t for t in available_techniques()
                   if monitor_class(t).needs.guest_build == other]
        assert runners and all(t in message.split(": run it with ")[1] for t in runners)
        with pytest.raises(MonitorError) as exc:
            cls(builds[other])
        assert str(exc.value) == message


def test_a_required_vmcs_control_is_refused_before_construction():
    shadow, ept = monitor_class("hw_shadow"), monitor_class("hw_ept")
    message = shadow.refusal("modern", controls={"cr3_load_exiting": False})
    assert message and "hw_shadow requires cr3_load_exiting" in message
    assert ept.refusal("modern", controls={"cr3_load_exiting": False}) is None   # optional
    assert ept.refusal("modern", controls={"hlt_exiting": False})
    assert monitor_class("binary_translation").refusal("modern", levels=3)
    assert monitor_class("trap_emulate").refusal("modern", levels=3) is None


def test_counter_dicts_names_events_vectors_and_opcodes_and_leaves_out_zeros():
    import numpy as np

    from kernel_sim import isa
    from kernel_sim.results import counter_dicts
    from kernel_sim.state import EV_OP_BASE, EV_TRAPS, EV_VECTOR_BASE, EVENT_NAMES, NUM_COUNTERS
    c = np.zeros(NUM_COUNTERS, dtype=np.int64)
    c[EV_TRAPS] = 3
    c[EV_VECTOR_BASE + isa.VEC_SYSCALL] = 2
    c[EV_VECTOR_BASE + 200] = 1
    c[EV_OP_BASE + isa.OP_HLT] = 4
    c[EV_OP_BASE + 0xFE] = 5                          # no instruction has this opcode
    events, traps, opcodes = counter_dicts(c)
    assert list(events) == list(EVENT_NAMES) and events["traps"] == 3
    assert traps == {isa.VECTOR_KEYS[isa.VEC_SYSCALL]: 2, "vector_200": 1}
    assert opcodes == {isa.BY_OPCODE[isa.OP_HLT].mnemonic: 4, "0xfe": 5}


def test_every_result_goes_through_monitor_result():
    """The single door: a technique answers guest_counters(), cpu_cycles() and notes();
    Monitor.result() makes the result (so a per-operation measurement added there reaches
    every technique).  A toy technique shows what each answer becomes."""
    import numpy as np

    from kernel_sim.machine import Machine
    from kernel_sim.monitors import available_techniques
    from kernel_sim.monitors.base import Monitor
    from kernel_sim.state import EV_INSTRUCTIONS, NUM_COUNTERS

    class Toy(Monitor):
        name = "toy"

        def _boot(self):
            self.machine = Machine(memory_size=4096)

        def _run(self, budget):
            self.count("toy:exit", cycles=30, category="transitions")
            self.count("toy:never", n=0, cycles=0)      # zero events are left out
            self.stop = "halt"

        def view(self):
            return self.machine

        def guest_counters(self):
            c = np.zeros(NUM_COUNTERS, dtype=np.int64)
            c[EV_INSTRUCTIONS] = 7
            return c

        def cpu_cycles(self):
            return {"guest": 100, "memory": 5}

        def notes(self):
            return ["a toy"]

    r = Toy(image()).run(10)
    assert (r.technique, r.stop, r.instructions, r.notes) == ("toy", "halt", 7, ["a toy"])
    assert r.monitor_events == {"toy:exit": 1} and r.event_cycles == {"toy:exit": 30}
    assert r.cycles_by_category == {"guest": 100, "transitions": 30, "emulation": 0,
                                    "memory": 5, "devices": 0} and r.cycles == 135
    for name in available_techniques():
        assert monitor_class(name).result is Monitor.result, f"{name} bypasses Monitor.result"


def test_the_exit_table_says_vm_exit_exactly_for_techniques_whose_events_are_vm_exits():
    from kernel_sim.guest import build_guest
    from kernel_sim.monitors import techniques_for
    for name in techniques_for("modern"):
        cls = monitor_class(name)
        r = run_technique(build_guest("syscall", count=3, **cls.guest_options()), name)
        assert r.vm_exits is cls.needs.vm_exits
        header = r.exit_table().splitlines()[2].split()[0]
        assert header == ("VM-EXIT" if cls.needs.vm_exits else "EVENT")
    assert monitor_class("hw_ept").needs.vm_exits and not monitor_class("paravirt").needs.vm_exits
