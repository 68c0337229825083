"""The batch explorer of notebook 06: what it plots is what the simulator returns.

Expected values come from direct runs (``build_guest`` + ``run_technique``, not the explorer's
cached functions), and from what the PARAVIRT kernel must do: with batch size 1 every page-table
update is its own ``mmu_update`` hypercall, a batch of b carries at most b updates, and at boot
the kernel writes the 256 entries of its identity map (1 MiB of guest RAM in 4 KiB pages) before
anything needs them, so a bigger batch saves at least the difference at boot.
"""
import pytest

from kernel_sim.guest import GUEST_RAM, build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.viz.paravirt import BATCH_WORKLOADS, BATCHES
from kernel_sim.widgets.paravirt import BatchExplorer, batch_explorer


def direct(workload, batch, count=None):
    """(mmu_update hypercalls, PTE updates, all events) of a fresh run."""
    r = run_technique(build_guest(workload, count, paravirt=True, batch=batch), "paravirt")
    assert r.stop == "halt", r.notes
    ev = r.monitor_events
    return ev.get("hypercall:mmu_update", 0), ev.get("paravirt:pte_updates", 0), ev


def plotted(e):
    """{batch: (hypercalls, pte updates)} of the batch chart, and the marked point."""
    calls, ptes, mark = e.batch_fig.data
    assert list(calls.x) == list(ptes.x)
    table = {int(b): (int(c), int(p)) for b, c, p in
             zip(calls.x, calls.y, ptes.y, strict=True)}
    return table, (int(mark.x[0]), int(mark.y[0]))


def plotted_hypercalls(e):
    bars = e.hypercalls_fig.data[0]
    return dict(zip(bars.y, (int(v) for v in bars.x), strict=True))


@pytest.fixture(scope="module")
def explorer():
    return batch_explorer()


def test_the_boot_chart_equals_direct_runs(explorer):
    table, mark = plotted(explorer)
    assert sorted(table) == sorted(BATCHES)
    for b in BATCHES:
        calls, ptes, _ = direct("boot", b)
        assert table[b] == (calls, ptes), b
    assert mark == (8, table[8][0])


def test_the_boot_numbers_make_sense():
    """Properties of batching, not values copied from the code."""
    one_calls, one_ptes, _ = direct("boot", 1)
    assert one_calls == one_ptes                       # batch 1: one update per hypercall
    previous = one_calls
    for b in BATCHES[1:]:
        calls, ptes, _ = direct("boot", b)
        assert calls >= -(-ptes // b)                  # a hypercall carries at most b updates
        assert calls <= previous                       # bigger batches never need more calls
        previous = calls
    identity_map = GUEST_RAM // 4096                   # 256 entries written back to back
    calls8, _, _ = direct("boot", 8)
    assert one_calls - calls8 >= identity_map - identity_map // 8


def test_moving_the_slider_replots_both_charts(explorer):
    explorer.batch.value = 13                          # what the browser's slider does
    table, mark = plotted(explorer)
    calls, ptes, events = direct("boot", 13)
    assert table[13] == (calls, ptes) and mark == (13, calls)
    assert explorer.result.monitor_events == events
    shown = plotted_hypercalls(explorer)
    assert shown == {k.split(":", 1)[1]: v for k, v in events.items()
                     if k.startswith("hypercall:")}
    assert list(shown.values()) == sorted(shown.values(), reverse=True)
    assert f"{calls:,} mmu_update hypercalls" in explorer.summary.value


@pytest.mark.parametrize("workload", [w for w in BATCH_WORKLOADS if w != "boot"])
def test_changing_the_workload_reruns_it(explorer, workload):
    assert explorer.set(workload=workload, batch=4)
    count = BATCH_WORKLOADS[workload]
    assert explorer.count == count and count is not None
    table, mark = plotted(explorer)
    for b in (1, 4, 64):
        calls, ptes, _ = direct(workload, b, count)
        assert table[b] == (calls, ptes), (workload, b)
    assert mark == (4, table[4][0])
    assert workload in explorer.batch_fig.layout.title.text
    assert f"count {count}" in explorer.summary.value


@pytest.mark.parametrize("settings, needle", [
    ({"batch": 0}, "batch"), ({"batch": 65}, "batch"), ({"batch": 2.5}, "batch"),
    ({"batch": True}, "batch"), ({"batch": "8"}, "batch"), ({"workload": "nope"}, "workload"),
    ({"workload": "syscall"}, "workload"), ({"colour": "red"}, "unknown setting"),
    ({"workload": "boot", "batch": 100}, "batch"),
])
def test_bad_values_are_refused_with_a_message_and_nothing_changes(settings, needle):
    e = batch_explorer("ptemod", 2)
    before = (plotted(e), plotted_hypercalls(e), e.workload.value, e.batch.value, e.result)
    assert e.set(**settings) is False
    assert "refused" in e.message.value and needle in e.message.value
    assert (plotted(e), plotted_hypercalls(e), e.workload.value, e.batch.value,
            e.result) == before
    assert e.set(batch=3) and e.message.value == ""    # a good value clears the message


def test_the_constructor_refuses_bad_values():
    with pytest.raises(ValueError, match="batch"):
        BatchExplorer("boot", 0)
    with pytest.raises(ValueError, match="workload"):
        BatchExplorer("nope")


def test_controls_and_figures_are_labelled(explorer):
    for control in (explorer.workload, explorer.batch):
        assert control.description
    assert explorer.batch.continuous_update is False
    assert (explorer.batch.min, explorer.batch.max) == (1, 64)
    for fig in (explorer.batch_fig, explorer.hypercalls_fig):
        assert fig.layout.title.text
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
