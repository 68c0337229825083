"""The Virtualization Lab (notebook 07): what it plots is what the simulator returns.

Every expected number here comes from a direct run of the guest with ``build_guest`` and
``run_technique`` in the test, never from the Lab's own cache or figures.
"""
import pytest

from kernel_sim.guest import WORKLOADS, build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.viz.hardware import CYCLES_TITLE, EVENTS_TITLE, TIMELINE_TITLE
from kernel_sim.widgets.base import count_limit
from kernel_sim.widgets.hardware import DEFAULT_COUNT, LAB_CONTROLS, virtualization_lab


def direct(technique, workload="forkwait", count=DEFAULT_COUNT, cpu="nehalem", batch=8,
           **settings):
    """A fresh run of one configuration, exactly as the Lab documents it (strict ISA)."""
    image = build_guest(workload, count=count, paravirt=(technique == "paravirt"), batch=batch)
    return run_technique(image, technique, cpu=cpu, strict=True, **settings)


@pytest.fixture
def lab():
    return virtualization_lab()


def plotted_events(lab, side):
    trace = lab.events_fig.data[0 if side == "left" else 1]
    return dict(zip(trace.y, trace.x, strict=True))


def check_events(lab, side, expected):
    """The side's bars show every reason's count; reasons beyond the chart's top are summed
    as "other", so the bars always add up to the total number of events."""
    shown = plotted_events(lab, side)
    assert sum(shown.values()) == sum(expected.monitor_events.values())
    for reason, count in shown.items():
        if reason != "other":
            assert count == expected.monitor_events.get(reason, 0), reason
    for reason, count in expected.monitor_events.items():
        if reason not in shown:
            assert "other" in shown and count <= shown["other"]


def plotted_cycles(lab):
    """{bar label: total simulated cycles} of the stacked cycles chart."""
    labels = lab.cycles_fig.data[0].x
    return {label: sum(tr.y[k] for tr in lab.cycles_fig.data) for k, label in enumerate(labels)}


def snapshot(lab):
    return [(tr.name, tuple(tr.x), tuple(tr.y))
            for fig in (lab.events_fig, lab.cycles_fig, lab.timeline_fig) for tr in fig.data]


def test_default_view_is_forkwait_shadow_against_ept_on_nehalem(lab):
    assert lab.workload.value == "forkwait" and lab.count.value == DEFAULT_COUNT
    assert lab.left.technique.value == "hw_shadow" and lab.right.technique.value == "hw_ept"
    assert lab.left.cpu.value == lab.right.cpu.value == "nehalem"
    shadow, ept, native = direct("hw_shadow"), direct("hw_ept"), direct("native")
    check_events(lab, "left", shadow)
    check_events(lab, "right", ept)
    # shadow paging exits on guest page faults, EPT does not; EPT exits on EPT violations
    left, right = plotted_events(lab, "left"), plotted_events(lab, "right")
    assert left["EXCEPTION_NMI:page_fault"] > 0 and right["EXCEPTION_NMI:page_fault"] == 0
    assert right["EPT_VIOLATION"] > 0 and left["EPT_VIOLATION"] == 0
    cycles = plotted_cycles(lab)
    assert cycles["native"] == native.cycles
    bars = {label.split("<br>")[0]: (label, total) for label, total in cycles.items()}
    assert bars["left: hw_shadow"][1] == shadow.cycles
    assert bars["right: hw_ept"][1] == ept.cycles
    assert f"{shadow.cycles / native.cycles:.2f}x native" in bars["left: hw_shadow"][0]
    assert f"{shadow.cycles / native.cycles:.2f}x native" in lab.summary.value
    assert lab.results["left"].state_digest == shadow.state_digest
    assert lab.baseline.state_digest == native.state_digest
    # the timeline: one point per recorded exit, at the guest tick it happened
    for k, r in enumerate((shadow, ept)):
        trace = lab.timeline_fig.data[k]
        assert list(trace.x) == [t for t, *_ in r.exit_timeline]
        assert list(trace.y) == list(range(1, len(r.exit_timeline) + 1))
        assert list(trace.text) == [e[1] for e in r.exit_timeline]
    assert lab.message.value == ""


@pytest.mark.parametrize("technique", ["trap_emulate", "binary_translation"])
def test_changing_the_left_technique_replots_what_the_simulator_returns(lab, technique):
    before = snapshot(lab)
    lab.left.technique.value = technique
    assert lab.message.value == ""
    expected = direct(technique)
    assert lab.results["left"].state_digest == expected.state_digest
    check_events(lab, "left", expected)
    check_events(lab, "right", direct("hw_ept"))
    assert plotted_cycles(lab)[f"left: {technique}<br>"
                               f"{expected.cycles / direct('native').cycles:.2f}x native"] \
        == expected.cycles
    assert snapshot(lab) != before
    # software techniques record no exit timeline, and the chart and summary say so
    assert list(lab.timeline_fig.data[0].x) == []
    assert "hardware assist" in lab.timeline_fig.data[0].name
    assert "recorded only for hardware assist" in lab.summary.value
    # knobs of hardware assist and paravirt do not apply: disabled, with a note
    assert lab.left.vpid.disabled and not lab.left.vpid.value
    assert lab.left.batch.disabled
    assert all(box.disabled and not box.value for box in lab.left.controls.values())
    assert "apply only to hardware assist" in lab.left.note.value


def test_paravirt_batch_size_is_a_knob_of_paravirt_only(lab):
    lab.left.technique.value = "paravirt"
    assert not lab.left.batch.disabled
    lab.left.batch.value = 2
    assert lab.message.value == ""
    expected = direct("paravirt", batch=2)
    check_events(lab, "left", expected)
    assert expected.monitor_events != direct("paravirt", batch=8).monitor_events


def test_an_optional_vmcs_control_adds_exits_under_ept(lab):
    assert not lab.right.controls["cr3_load_exiting"].disabled
    before = plotted_events(lab, "right").get("CR_ACCESS", 0)
    assert before == 0
    lab.right.controls["cr3_load_exiting"].value = True
    assert lab.message.value == ""
    expected = direct("hw_ept", controls={"cr3_load_exiting": True})
    check_events(lab, "right", expected)
    # each guest PTBR load now exits: as many CR_ACCESS exits as the native run's ptbr_writes
    assert plotted_events(lab, "right")["CR_ACCESS"] == direct("native").events["ptbr_writes"] > 0
    # hw_shadow needs every one of these controls: ticked and locked
    assert all(box.value and box.disabled for box in lab.left.controls.values())


def test_tlb_size_and_vpid_change_the_run(lab):
    lab.right.tlb_size.value = 16
    assert lab.message.value == ""
    small = direct("hw_ept", tlb_size=16)
    native_small, native = direct("native", tlb_size=16), direct("native")
    assert native_small.cycles != native.cycles
    cycles = plotted_cycles(lab)
    assert cycles["native (right's TLB)"] == native_small.cycles
    assert cycles["native (left's TLB)"] == native.cycles
    assert lab.results["right"].cycles == small.cycles
    lab.right.vpid.value = False
    assert lab.message.value == ""
    no_vpid = direct("hw_ept", tlb_size=16, vpid=False)
    assert lab.results["right"].cycles == no_vpid.cycles != small.cycles


def test_refusals_leave_the_charts_unchanged_and_show_a_message(lab):
    before = snapshot(lab)
    results = dict(lab.results)

    lab.right.cpu.value = "first-vtx"            # hw_ept needs EPT: Nehalem and later
    assert "refused" in lab.message.value and "EPT" in lab.message.value
    assert "right" in lab.message.value
    assert snapshot(lab) == before and lab.results == results
    lab.right.cpu.value = "nehalem"
    assert lab.message.value == ""

    lab.left.cpu.value = "first-vtx"             # hw_shadow with VPID ticked: no VPID there
    assert "refused" in lab.message.value and "VPID" in lab.message.value
    assert snapshot(lab) == before
    lab.left.vpid.value = False                  # ... and without a VPID it runs
    assert lab.message.value == ""
    assert lab.results["left"].cycles == direct("hw_shadow", cpu="first-vtx", vpid=False).cycles
    lab.left.cpu.value = "nehalem"
    lab.left.vpid.value = True
    assert snapshot(lab) == before

    lab.left.controls["invlpg_exiting"].value = False     # hw_shadow requires it
    assert "refused" in lab.message.value and "invlpg_exiting" in lab.message.value
    assert snapshot(lab) == before
    lab.left.controls["invlpg_exiting"].value = True

    lab.left.technique.value = "trap_emulate"
    after_switch = snapshot(lab)
    for knob, value, words in ((lab.left.batch, 4, "batch size"), (lab.left.vpid, True, "VPID"),
                               (lab.left.controls[LAB_CONTROLS[0]], True, "VMCS controls")):
        knob.value = value                       # a knob set for a technique it does not fit
        assert "refused" in lab.message.value and words in lab.message.value
        assert "Traceback" not in lab.message.value
        assert snapshot(lab) == after_switch
        knob.value = {4: 8, True: False}[value]
        assert lab.message.value == ""


def test_the_count_slider_follows_the_workload(lab):
    lab.workload.value = "syscall"
    assert lab.count.max == count_limit("syscall") == 2 * WORKLOADS["syscall"].default_count
    check_events(lab, "left", direct("hw_shadow", workload="syscall"))
    lab.count.value = 7
    check_events(lab, "right", direct("hw_ept", workload="syscall", count=7))


def test_every_control_has_a_description_and_every_figure_its_titles(lab):
    controls = lab.all_controls()
    assert len(controls) == 2 + 2 * (5 + len(LAB_CONTROLS))
    for control in controls:
        assert control.description
    assert lab.left.technique.description != lab.right.technique.description
    assert lab.events_fig.layout.title.text == EVENTS_TITLE
    assert lab.cycles_fig.layout.title.text == CYCLES_TITLE
    assert lab.timeline_fig.layout.title.text == TIMELINE_TITLE
    assert lab.cycles_fig.layout.yaxis.title.text == "simulated cycles"
    assert lab.timeline_fig.layout.xaxis.title.text == "guest ticks"
    for fig in (lab.events_fig, lab.cycles_fig, lab.timeline_fig):
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    # the two sides differ by more than colour: bar pattern, line dash, marker
    left, right = lab.events_fig.data
    assert left.marker.pattern.shape != right.marker.pattern.shape
    left, right = lab.timeline_fig.data
    assert left.line.dash != right.line.dash and left.marker.symbol != right.marker.symbol
    lab.left.technique.value = "native"
    assert lab.events_fig.layout.title.text == EVENTS_TITLE      # titles stay put
