"""The emulation explorer (notebook 04): what it plots is what the API returns, bad values are
refused, and the slowdown figure shows every workload in both modes."""
import pytest

from kernel_sim.guest import WORKLOADS, build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.viz.emulation import CACHE_SIZES, MODE_LABELS, slowdown_figure, slowdown_rows
from kernel_sim.viz.techniques import event_bars
from kernel_sim.widgets.emulation import count_limit, emulation_explorer


@pytest.fixture(scope="module")
def explorer():
    return emulation_explorer(workload="syscall", mode="translate", count=20)


def direct(workload, mode, count, cache_size=CACHE_SIZES[-1]):
    """The same setting run here, without the explorer or its caches."""
    image = build_guest(workload, count=count)
    return (run_technique(image, "emulation", mode=mode, cache_size=cache_size),
            run_technique(image, "native"))


def plotted_cycles(e):
    """{bar label: total simulated cycles} as the cycles chart stacks them."""
    return {name: sum(tr.y[k] for tr in e.cycles_fig.data)
            for k, name in enumerate(e.cycles_fig.data[0].x)}


def assert_shows(e, workload, mode, count, cache_size=CACHE_SIZES[-1]):
    emu, native = direct(workload, mode, count, cache_size)
    assert e.result.state_digest == emu.state_digest
    assert e.result.monitor_events == emu.monitor_events
    reasons, counts = event_bars(emu)
    assert list(e.events_fig.data[0].y) == reasons
    assert list(e.events_fig.data[0].x) == counts
    assert plotted_cycles(e) == {"native": native.cycles, f"emulation ({mode})": emu.cycles}
    assert f"{emu.cycles / native.cycles:.1f}x" in e.summary.value


def test_plots_equal_a_direct_run_of_the_same_setting(explorer):
    assert_shows(explorer, "syscall", "translate", 20)


@pytest.mark.parametrize("settings, expect", [
    ({"mode": "interpret"}, ("syscall", "interpret", 20)),
    ({"workload": "io", "count": 7}, ("io", "interpret", 7)),
    ({"mode": "translate", "cache_size": CACHE_SIZES[0]}, ("io", "translate", 7, CACHE_SIZES[0])),
    ({"workload": "compute", "cache_size": CACHE_SIZES[-1], "count": 100},
     ("compute", "translate", 100)),
])
def test_every_control_change_reruns_and_replots(explorer, settings, expect):
    before = (list(explorer.events_fig.data[0].x), plotted_cycles(explorer))
    assert explorer.set(**settings), explorer.message.value
    assert explorer.message.value == ""
    assert_shows(explorer, *expect)
    assert (list(explorer.events_fig.data[0].x), plotted_cycles(explorer)) != before


def test_interpretation_shows_only_dispatches_and_memory_and_device_work(explorer):
    assert explorer.set(workload="syscall", mode="interpret", count=20)
    reasons = set(explorer.events_fig.data[0].y)
    assert "emulation:interpreted" in reasons
    assert not any("tb_" in r or "translat" in r or "block_cache" in r for r in reasons)


def test_a_tiny_translation_cache_thrashes(explorer):
    assert explorer.set(workload="syscall", mode="translate", cache_size=CACHE_SIZES[0])
    small = explorer.result
    assert explorer.set(cache_size=CACHE_SIZES[-1])
    big = explorer.result
    assert small.monitor_events["emulation:tb_flushes"] > 0
    assert big.monitor_events.get("emulation:tb_flushes", 0) == 0
    assert small.monitor_events["emulation:translations"] > \
        big.monitor_events["emulation:translations"]
    assert small.cycles > big.cycles
    assert small.user_digest == big.user_digest            # same guest result either way


def test_bad_values_are_refused_with_a_message_and_nothing_changes(explorer):
    digest, shown = explorer.result.state_digest, list(explorer.events_fig.data[0].x)
    for bad in ({"mode": "jit"}, {"workload": "no_such"}, {"count": 0}, {"count": 10 ** 9},
                {"count": 2.5}, {"cache_size": 64}, {"colour": "red"}):
        assert not explorer.set(**bad), bad
        assert "refused" in explorer.message.value
        name = next(iter(bad))
        assert name in explorer.message.value or "setting" in explorer.message.value
        assert explorer.result.state_digest == digest
        assert list(explorer.events_fig.data[0].x) == shown


def test_the_count_slider_follows_the_workload(explorer):
    assert explorer.set(workload="forkwait")
    assert explorer.count.max == count_limit("forkwait") == 2 * WORKLOADS["forkwait"].default_count
    assert explorer.count.value <= explorer.count.max
    assert not explorer.set(workload="preempt", count=count_limit("preempt") + 1)


def test_every_control_has_a_description_and_sliders_wait_for_release(explorer):
    for control in (explorer.workload, explorer.mode, explorer.count, explorer.cache):
        assert control.description
    assert explorer.count.continuous_update is False
    assert [v for _, v in explorer.mode.options] == list(MODE_LABELS)
    assert explorer.events_fig.layout.title.text and explorer.cycles_fig.layout.title.text
    assert explorer.cycles_fig.layout.yaxis.title.text == "simulated cycles"


def test_slowdown_figure_shows_every_workload_in_both_modes():
    rows = slowdown_rows()
    assert [r["workload"] for r in rows] == list(WORKLOADS)
    fig = slowdown_figure(rows)
    assert [tr.name for tr in fig.data] == list(MODE_LABELS.values())
    for tr, mode in zip(fig.data, MODE_LABELS, strict=True):
        assert list(tr.x) == list(WORKLOADS)
        for name, y in zip(tr.x, tr.y, strict=True):
            emu, native = direct(name, mode, None)
            assert y == pytest.approx(emu.cycles / native.cycles, abs=0.005)
    # the shape the notebook teaches: every workload is slower than native in both modes, and
    # interpretation is slower than translation with the default cache
    assert all(1 < r["translate_x"] < r["interpret_x"] for r in rows)
    assert "model assumptions" in fig.layout.title.subtitle.text
