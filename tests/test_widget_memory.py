"""The walk explorer of notebook 08 and the figures of kernel_sim.viz.memory.

What the explorer draws is compared with what a two-dimensional walk must do, written out here
from its definition and not from the figure code: for each guest level L from n down to 1, the
nested table's levels m down to 1 find where the guest's level-L entry lives, then that entry is
read; after the last guest level, one more nested walk finds the data page.  A native walk
(m = 0) reads the n guest levels and nothing else.  The reference counts come from the same
rule, (n+1)(m+1) - 1, and the comparison runs use ``run_technique`` directly.
"""
import pytest

from kernel_sim.guest import build_guest
from kernel_sim.monitors import run_technique
from kernel_sim.viz import memory as viz
from kernel_sim.widgets.memory import WalkExplorer, walk_explorer

PAIRS = [(n, m) for n in range(1, 5) for m in range(0, 5)]


def expected_cells(n: int, m: int) -> list[tuple[str, str]]:
    """(column, row) of every reference of an n-over-m cold walk, in order."""
    out = []
    for level in range(n, 0, -1):
        row = f"guest L{level} entry"
        out += [(f"nested L{k}", row) for k in range(m, 0, -1)]
        out.append(("guest table" if m else "page table", row))
    out += [(f"nested L{k}", "data page") for k in range(m, 0, -1)]
    return out


def drawn_cells(fig) -> list[tuple[str, str]]:
    """(column, row) of every marker of the walk figure, sorted by the number it carries."""
    cells = []
    for trace in fig.data:
        if trace.visible is False:
            assert not trace.x
            continue
        for x, y, t in zip(trace.x, trace.y, trace.text, strict=True):
            cells.append((int(t), x, y))
    numbers = sorted(c[0] for c in cells)
    assert numbers == list(range(1, len(cells) + 1))       # numbered 1..N, each once
    return [(x, y) for _, x, y in sorted(cells)]


@pytest.fixture(scope="module")
def explorer():
    return walk_explorer()


def test_the_default_is_four_over_four_with_24_references(explorer):
    assert isinstance(explorer, WalkExplorer)
    assert drawn_cells(explorer.fig) == expected_cells(4, 4)
    assert len(expected_cells(4, 4)) == 24
    assert explorer.result.references == 24
    assert "24" in explorer.fig.layout.title.text and "<b>24</b>" in explorer.summary.value


@pytest.mark.parametrize("n, m", PAIRS)
def test_every_setting_draws_the_walk_in_order(explorer, n, m):
    assert explorer.set(guest_levels=n, nested_levels=m)
    want = expected_cells(n, m)
    assert len(want) == (n + 1) * (m + 1) - 1
    assert drawn_cells(explorer.fig) == want
    assert explorer.result.references == len(want)
    assert f"{len(want)} memory references" in explorer.fig.layout.title.text
    assert f"<b>{len(want)}</b>" in explorer.summary.value
    assert explorer.steps.value.count("<tr><td>") == len(want)
    assert explorer.message.value == ""
    assert (explorer.fig.data[0].visible is not False) == (m > 0)
    assert ("nested" in explorer.fig.layout.xaxis.title.text) == (m > 0)


def test_moving_a_slider_redraws_the_figure():
    e = walk_explorer(2, 1)
    assert drawn_cells(e.fig) == expected_cells(2, 1)
    e.nested_levels.value = 3
    assert drawn_cells(e.fig) == expected_cells(2, 3) and e.result.nested_levels == 3
    e.guest_levels.value = 4
    assert drawn_cells(e.fig) == expected_cells(4, 3) and e.result.guest_levels == 4


@pytest.mark.parametrize("settings", [
    {"guest_levels": 0}, {"guest_levels": 5}, {"nested_levels": -1}, {"nested_levels": 5},
    {"guest_levels": True}, {"nested_levels": 2.0}, {"guest_levels": "3"}, {"depth": 2},
])
def test_bad_values_are_refused_and_change_nothing(settings):
    e = walk_explorer(3, 2)
    before, walk = drawn_cells(e.fig), e.result
    assert not e.set(**settings)
    assert "refused" in e.message.value
    assert drawn_cells(e.fig) == before and e.result is walk
    assert (e.guest_levels.value, e.nested_levels.value) == (3, 2)
    assert e.set(nested_levels=1) and e.message.value == ""    # a good value clears it


def test_bad_values_at_construction_raise():
    with pytest.raises(ValueError, match="guest_levels"):
        walk_explorer(guest_levels=9)


def test_every_control_has_a_description_and_waits_for_release(explorer):
    for slider in (explorer.guest_levels, explorer.nested_levels):
        assert slider.description and slider.continuous_update is False
    assert (explorer.nested_levels.min, explorer.nested_levels.max) == (0, 4)
    assert (explorer.guest_levels.min, explorer.guest_levels.max) == (1, 4)


def test_the_widget_is_registered_lazily():
    import kernel_sim.widgets as widgets
    assert widgets.walk_explorer is walk_explorer


def test_the_reference_map_follows_the_formula():
    fig = viz.references_figure()
    z = fig.data[0].z
    for n in range(1, 5):
        for m in range(0, 5):
            assert z[n - 1][m] == n * m + n + m
    assert z[3][4] == 24 and z[3][0] == 4
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_the_modes_table_equals_direct_runs():
    table = viz.modes_table(["ptemod"])
    rows = {r["mode"]: r for r in table.rows}
    image = build_guest("ptemod", viz.MODE_WORKLOADS["ptemod"])
    native = run_technique(image, "native").cycles
    for mode in ("hw_shadow", "hw_ept"):
        r = run_technique(image, mode, cpu="nehalem")
        assert rows[mode]["VM exits"] == sum(r.monitor_events.values())
        assert rows[mode]["TLB misses"] == r.events["tlb_misses"]
        assert rows[mode]["x native"] == pytest.approx(r.cycles / native)
    # shadow paging exits on INVLPG and page faults; EPT on neither
    assert rows["hw_shadow"]["VM exits"] > rows["hw_ept"]["VM exits"]
    assert "<table>" in table._repr_html_()


def test_the_tlb_sweep_equals_direct_runs():
    data = viz.tlb_sweep("compute", sizes=(4, 64))
    image = build_guest("compute", viz.MODE_WORKLOADS["compute"])
    for i, size in enumerate(data["tlb_size"]):
        for mode in ("hw_shadow", "hw_ept"):
            r = run_technique(image, mode, cpu="nehalem", tlb_size=size)
            assert data[mode][i] == r.cycles
            assert data[f"{mode} misses"][i] == r.events["tlb_misses"]
    # a smaller TLB can only miss more
    assert data["hw_ept misses"][0] >= data["hw_ept misses"][1]


def test_the_ept_levels_table_follows_the_formula_per_miss():
    rows = viz.ept_levels_table("ctxswitch").rows
    assert [r["nested levels"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        m = r["nested levels"]
        assert r["formula"] == 3 * (m + 1) - 1          # the guest's table has 2 levels
        assert r["refs per miss"] <= r["formula"]       # a walk that faults stops early
    assert len({r["TLB misses"] for r in rows}) == 1    # the depth does not change the misses
