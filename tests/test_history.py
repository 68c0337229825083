"""Behaviour of notebook 01's data, figures, widget and exercises (kernel_sim.lessons.history & co)."""
from __future__ import annotations

import pytest

from kernel_sim.lessons import history
from kernel_sim.exercises import check, nb01
from kernel_sim.viz.style import PALETTE
from kernel_sim.viz.timeline import (
    APPROX_LEGEND,
    CATEGORY_STYLE,
    show_categories,
    timeline_figure,
    vmm_models_figure,
)

#: Events whose dates the course fact sheet marks [verify] (or gives only as "about").
FACT_SHEET_VERIFY = {"cp40", "vm370", "bochs", "vtx", "amdv", "rvi", "ept", "jails", "lxc",
                     "docker"}
#: Events whose dates the fact sheet marks [checked].
FACT_SHEET_CHECKED = {"s360_67", "cp67", "popek_goldberg", "robin_irvine", "vmware", "qemu",
                      "xen", "adams_agesen", "kvm", "qumranet", "bhargava", "soltesz", "felter"}

SEED_KINDS = {"系统": "system", "存储": "storage", "网络": "network", "GPU": "gpu",
              "软件": "software", "硬件": "hardware"}


# ---- the timeline data ------------------------------------------------------------------------
def test_timeline_is_sorted_by_date():
    whens = [e.when for e in history.EVENTS]
    assert whens == sorted(whens)


def test_every_event_has_a_known_source_and_category():
    for e in history.EVENTS:
        assert e.source in history.SOURCES, e.key
        assert e.citation.strip(), e.key
        assert e.category in history.CATEGORIES, e.key
        assert e.description.strip() and e.name.strip() and e.short.strip(), e.key


def test_event_keys_are_unique():
    keys = [e.key for e in history.EVENTS]
    assert len(keys) == len(set(keys))


def test_every_verify_fact_is_flagged_unverified():
    by_key = {e.key: e for e in history.EVENTS}
    for key in FACT_SHEET_VERIFY:
        assert by_key[key].verified is False, key
        assert by_key[key].date_label.startswith("about"), key
    for key in FACT_SHEET_CHECKED:
        assert by_key[key].verified is True, key
    assert FACT_SHEET_VERIFY | FACT_SHEET_CHECKED == set(by_key), "classify every event"


def test_events_from_secondary_sources_are_never_marked_verified():
    for e in history.EVENTS:
        if e.source == "secondary":
            assert not e.verified, e.key


def test_months_appear_only_on_checked_dates():
    for e in history.EVENTS:
        if e.month is not None:
            assert e.verified, e.key


def test_kvm_and_qumranet_dates_match_the_fact_sheet():
    assert history.event("kvm").date_label == "4 February 2007"
    qumranet = history.event("qumranet")
    assert qumranet.date_label == "4 September 2008"
    assert "Qumranet" in qumranet.name and "company" in qumranet.description


def test_timeline_starts_with_ibm_cp_and_reaches_containers():
    first = history.EVENTS[0]
    assert first.category == "mainframe" and "CP" in first.name
    assert "Control Program" in first.description
    assert history.events_by_category("containers")


def test_unknown_category_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known: mainframe"):
        history.events_by_category("cloud")


# ---- kinds and terms -------------------------------------------------------------------------
def test_every_seed_kind_appears_with_its_chinese_name():
    by_key = {k.key: k for k in history.KINDS}
    for zh, key in SEED_KINDS.items():
        assert key in by_key, key
        assert zh in by_key[key].chinese and by_key[key].chinese.endswith("虚拟化")
        assert by_key[key].explanation and by_key[key].example
    html = history.kinds_html()
    for zh in SEED_KINDS:
        assert zh in html


def test_kind_lookup_accepts_english_and_chinese_names():
    assert history.kind("存储虚拟化").key == "storage"
    assert history.kind("Network Virtualization").key == "network"
    with pytest.raises(KeyError):
        history.kind("cloud")


def test_key_terms_of_the_seed_are_in_the_terms_table():
    chinese = " ".join(t.chinese for t in history.TERMS)
    for word in ("虚拟机监视器", "虚拟化平台", "客户机", "宿主机", "保护环", "容器", "半虚拟化"):
        assert word in chinese, word


# ---- figures ---------------------------------------------------------------------------------
def _palette_colours(fig):
    colours = []
    for trace in fig.data:
        c = trace.marker.color
        colours.extend(c if isinstance(c, (list, tuple)) else [c])
        lc = trace.marker.line.color
        if lc is not None:
            colours.extend(lc if isinstance(lc, (list, tuple)) else [lc])
    return colours


def test_timeline_figure_has_title_axis_titles_and_only_palette_colours():
    fig = timeline_figure()
    assert fig.layout.title.text
    assert fig.layout.xaxis.title.text == "year"
    assert fig.layout.xaxis2.title.text.startswith("year")
    assert fig.layout.yaxis.title.text
    assert set(_palette_colours(fig)) <= set(PALETTE)


def test_categories_differ_in_symbol_as_well_as_colour():
    colours = [c for c, _ in CATEGORY_STYLE.values()]
    symbols = [s for _, s in CATEGORY_STYLE.values()]
    assert len(set(colours)) == len(colours) and len(set(symbols)) == len(symbols)


def test_timeline_draws_every_event_once_and_marks_unverified_ones_open():
    fig = timeline_figure()
    seen = {}
    for trace in fig.data:
        if trace.customdata is None:
            continue
        for key, symbol, text, hover in zip(trace.customdata, trace.marker.symbol, trace.text,
                                            trace.hovertext, strict=True):
            assert key not in seen
            seen[key] = (symbol, text, hover)
    assert set(seen) == {e.key for e in history.EVENTS}
    for e in history.EVENTS:
        symbol, text, hover = seen[e.key]
        assert e.citation.split(",")[0] in hover
        if e.verified:
            assert not symbol.endswith("-open") and "approx" not in hover
        else:
            assert symbol.endswith("-open") and text.startswith("≈") and "(approx." in hover
    assert APPROX_LEGEND in [t.name for t in fig.data]


def test_show_categories_hides_other_rows_and_refuses_an_empty_choice():
    fig = timeline_figure(widget=True)
    show_categories(fig, ["containers"])
    visible = {t.legendgroup for t in fig.data if t.legendgroup and t.visible}
    assert visible == {"containers"}
    with pytest.raises(ValueError, match="at least one"):
        show_categories(fig, [])
    with pytest.raises(ValueError, match="unknown"):
        show_categories(fig, ["clouds"])
    assert {t.legendgroup for t in fig.data if t.legendgroup and t.visible} == {"containers"}


def test_timeline_explorer_refuses_an_empty_selection_with_a_visible_message():
    from kernel_sim.widgets.history import TimelineExplorer
    explorer = TimelineExplorer()
    n = len(history.events_by_category("mainframe"))
    assert explorer.select(["mainframe"]) == f"showing {n} events in 1 of 8 categories"
    message = explorer.select([])
    assert "at least one" in message and "at least one" in explorer.message.value
    assert {t.legendgroup for t in explorer.figure.data
            if t.legendgroup and t.visible} == {"mainframe"}


def test_vmm_models_figure_names_vmm_guest_and_host():
    fig = vmm_models_figure()
    assert fig.layout.title.text
    text = " ".join(a.text for a in fig.layout.annotations)
    for word in ("VMM", "虚拟机监视器", "guest", "客户机", "host", "宿主机", "type 1", "type 2"):
        assert word in text, word


# ---- the live experiment ---------------------------------------------------------------------
def test_two_machines_running_one_program_do_not_see_each_others_memory():
    a, b = history.run_two_machines("AB")
    assert a["cell_address"] == b["cell_address"]
    assert (a["cell_value"], b["cell_value"]) == ("A", "B")
    assert (a["console"], b["console"]) == ("AAA\n", "BBB\n")
    assert a["stop"] == b["stop"] == "halt"


def test_two_machines_refuses_names_that_are_not_single_letters():
    with pytest.raises(ValueError, match="printable"):
        history.run_two_machines("")


# ---- exercises -------------------------------------------------------------------------------
def test_01_1_accepts_date_order_and_rejects_quiz_order_with_a_hint():
    right = sorted(nb01.ORDER_QUIZ, key=lambda k: history.event(k).when)
    assert right[0] == "cp67" and right[-1] == "qumranet"
    assert check("01.1", right).ok
    verdict = check("01.1", list(nb01.ORDER_QUIZ))
    assert not verdict.ok and verdict.hint
    assert not check("01.1", right[:-1]).ok
    assert not check("01.1", "cp67 xen").ok


def test_01_1_accepts_event_names_instead_of_keys():
    right = sorted(nb01.ORDER_QUIZ, key=lambda k: history.event(k).when)
    assert check("01.1", [history.event(k).name for k in right]).ok


def test_01_2_accepts_roles_in_english_or_chinese_and_rejects_swaps():
    assert check("01.2", {"vmm": "B", "guest": "C", "host": "A"}).ok
    assert check("01.2", {"虚拟机监视器": "b", "客户机": "c", "宿主机": "a"}).ok
    verdict = check("01.2", {"vmm": "A", "guest": "C", "host": "B"})
    assert not verdict.ok and "vmm" in verdict.message and verdict.hint
    assert not check("01.2", {"vmm": "B"}).ok


def test_01_3_accepts_naming_the_debate_and_rejects_one_side():
    assert check("01.3", "c").ok
    assert check("01.3", "It depends: type 2 by the host model, type 1 by another view").ok
    for one_side in ("a", "b", "type 2", "Type 1"):
        verdict = check("01.3", one_side)
        assert not verdict.ok and "debate" in verdict.message and verdict.hint


def test_01_4_matches_examples_to_kinds():
    assert check("01.4", {1: "storage", 2: "network", 3: "hardware", 4: "system"}).ok
    assert check("01.4", {1: "存储虚拟化", 2: "网络虚拟化", 3: "硬件虚拟化", 4: "系统虚拟化"}).ok
    verdict = check("01.4", {1: "network", 2: "storage", 3: "hardware", 4: "system"})
    assert not verdict.ok and "[1, 2]" in verdict.message
    assert not check("01.4", {1: "clouds"}).ok
