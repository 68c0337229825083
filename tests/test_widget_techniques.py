"""The technique explorer (notebooks 03-06): what it plots is what the API returns."""
import pytest

from kernel_sim.guest import WORKLOADS, build_guest
from kernel_sim.monitors import available_techniques, run_technique
from kernel_sim.viz.techniques import event_bars
from kernel_sim.widgets.techniques import count_limit, run_setting, technique_explorer


@pytest.fixture(scope="module")
def explorer():
    return technique_explorer(workload="syscall", count=20)


def plotted_cycles(e):
    return {name: {tr.name: tr.y[k] for tr in e.cycles_fig.data}
            for k, name in enumerate(e.cycles_fig.data[0].x)}


def test_plots_equal_a_direct_run_of_the_same_setting(explorer):
    t = explorer.technique.value
    direct = run_technique(build_guest("syscall", count=20, paravirt=(t == "paravirt")), t,
                           strict=True)
    assert explorer.result.state_digest == direct.state_digest
    reasons, counts = event_bars(direct)
    assert reasons, f"{t} counted no monitor events on the syscall workload"
    assert list(explorer.events_fig.data[0].y) == reasons
    assert list(explorer.events_fig.data[0].x) == counts
    cycles = plotted_cycles(explorer)
    assert sum(cycles[t].values()) == direct.cycles


def test_changing_the_workload_reruns_and_replots(explorer):
    before = plotted_cycles(explorer)
    assert explorer.set(workload="compute", count=30)
    assert explorer.workload.value == "compute" and explorer.count.value == 30
    technique = explorer.technique.value
    direct = run_setting("compute", technique, 30, True, "modern")
    assert explorer.result.state_digest == direct.state_digest
    native = run_setting("compute", "native", 30, True, "modern")
    assert explorer.baseline.state_digest == native.state_digest
    after = plotted_cycles(explorer)
    assert after != before
    assert sum(after["native"].values()) == native.cycles


def test_bad_values_are_refused_with_a_message_and_nothing_changes(explorer):
    digest = explorer.result.state_digest
    assert not explorer.set(technique="no_such")
    assert "refused" in explorer.message.value and "technique" in explorer.message.value
    assert not explorer.set(count=10 ** 9)
    assert not explorer.set(strict="yes")
    assert not explorer.set(colour="red")
    assert explorer.result.state_digest == digest


def test_the_count_slider_follows_the_workload(explorer):
    assert explorer.set(workload="forkwait")
    assert explorer.count.max == count_limit("forkwait") == 2 * WORKLOADS["forkwait"].default_count
    assert explorer.count.value <= explorer.count.max


def test_every_control_has_a_description(explorer):
    for control in (explorer.workload, explorer.technique, explorer.cpu, explorer.strict,
                    explorer.count):
        assert control.description
    assert explorer.events_fig.layout.title.text and explorer.cycles_fig.layout.title.text
    assert explorer.cycles_fig.layout.yaxis.title.text == "simulated cycles"


def test_technique_menu_offers_every_available_technique_but_native():
    e = technique_explorer(count=5)
    assert list(e.technique.options) == [t for t in available_techniques() if t != "native"]
