"""kernel_sim.experiments: one configuration, one run function, one cache bounded in bytes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kernel_sim import experiments as ex
from kernel_sim.monitors import MonitorError, monitor_class


@pytest.fixture
def fresh():
    """An empty cache with the default bound; put back afterwards."""
    ex.clear_cache()
    limit = ex.set_cache_limit(ex.DEFAULT_CACHE_BYTES)
    yield
    ex.set_cache_limit(limit)
    ex.clear_cache()


def test_the_same_configuration_runs_once_and_returns_the_same_object(fresh):
    config = ex.Config("syscall", "trap_emulate", count=5, strict=True)
    first = ex.run(config)
    assert ex.cache_info().runs == 1
    again = ex.run(ex.Config("syscall", "trap_emulate", count=5, strict=True))
    assert again is first
    assert ex.result_of("syscall", "trap_emulate", count=5, strict=True) is first
    info = ex.cache_info()
    assert (info.runs, info.hits, info.entries) == (1, 2, 1)
    assert first.technique == "trap_emulate" and first.strict is True


def test_what_means_the_same_run_is_one_key(fresh):
    from kernel_sim.guest import WORKLOADS
    default = WORKLOADS["syscall"].default_count
    assert ex.normalize(ex.Config("syscall")) == ex.normalize(ex.Config("syscall", count=default))
    # the technique decides the ISA: native ignores strict, trap_emulate honours it
    assert ex.normalize(ex.Config("syscall", strict=True)).strict is False
    assert ex.normalize(ex.Config("syscall", "trap_emulate", strict=True)).strict is True
    a = ex.Config("syscall", "hw_ept", knobs={"controls": {"cr3_load_exiting": True,
                                                           "invlpg_exiting": False}})
    b = ex.Config("syscall", "hw_ept", knobs=[("controls", {"invlpg_exiting": False,
                                                            "cr3_load_exiting": True})])
    assert a == b and hash(a) == hash(b)
    assert ex.Config("syscall", knobs={"trace_size": None}) == ex.Config("syscall")
    assert a.knobs.thaw() == {"controls": {"cr3_load_exiting": True, "invlpg_exiting": False}}


#: for every field of Config: a base configuration and a change of that field
CHANGES = {
    "workload": ("compute",), "technique": ("binary_translation",), "cpu": ("nehalem",),
    "count": (7,), "strict": (False,), "knobs": ({"max_roots": 3},), "tlb_size": (16,),
    "levels": (3,), "budget": (123_456,),
}


def test_any_field_change_is_another_key():
    base = ex.Config("syscall", "trap_emulate", count=5, strict=True)
    key = ex.normalize(base)
    reserved = set(ex.RESERVED)
    untested = {f.name for f in dataclasses.fields(ex.Config)} - reserved - set(CHANGES) - \
        {"guest"}
    assert not untested, f"add the new field(s) {untested} to CHANGES"
    for name, (value,) in CHANGES.items():
        other = ex.normalize(base.replace(**{name: value}))
        assert other != key and hash(other) != hash(key), name
    pv = ex.Config("boot", "paravirt")
    assert ex.normalize(pv) != ex.normalize(pv.replace(guest={"batch": 16}))


def test_the_cache_stays_under_its_byte_bound_and_evicts_the_oldest(fresh):
    one = ex.run(ex.Config("compute", count=1))
    size = ex.estimate_bytes(one)
    assert 1000 < size < 10 << 20
    ex.set_cache_limit(int(2.5 * size))
    for n in range(2, 7):
        ex.run(ex.Config("compute", count=n))
        info = ex.cache_info()
        assert info.bytes <= info.limit
    info = ex.cache_info()
    assert info.entries <= 3 and info.evictions >= 3 and info.runs == 6
    ex.run(ex.Config("compute", count=6))           # the newest is still there
    assert ex.cache_info().runs == 6
    ex.run(ex.Config("compute", count=1))           # the oldest was evicted: it runs again
    assert ex.cache_info().runs == 7
    ex.set_cache_limit(100)                         # smaller than any entry: nothing is kept
    assert ex.cache_info().entries == 0 and ex.cache_info().bytes == 0
    ex.run(ex.Config("compute", count=1))
    assert ex.cache_info().entries == 0


def test_the_size_estimate_counts_arrays_and_containers():
    big = np.zeros(1 << 16, dtype=np.uint32)
    assert ex.estimate_bytes(big) >= big.nbytes
    assert ex.estimate_bytes({"a": big, "b": big}) < 2 * big.nbytes   # each object once
    rows = [(i, i + 1, "EXIT") for i in range(10_000)]
    assert ex.estimate_bytes(rows) > 10_000 * 50


def test_refused_configurations_give_the_monitors_message(fresh):
    want = monitor_class("hw_ept").refusal("first-vtx")
    assert want
    with pytest.raises(MonitorError) as err:
        ex.run(ex.Config("syscall", "hw_ept", cpu="first-vtx"))
    assert str(err.value) == want
    with pytest.raises(MonitorError, match="VPID"):
        ex.run(ex.Config("syscall", "hw_shadow", cpu="first-vtx", knobs={"vpid": True}))
    with pytest.raises(ValueError, match="batch"):
        ex.run(ex.Config("syscall", "trap_emulate", guest={"batch": 4}))
    with pytest.raises(ValueError, match="vpid does not apply to native"):
        ex.run(ex.Config("syscall", knobs={"vpid": True}))
    with pytest.raises(ValueError, match="unknown technique"):
        ex.run(ex.Config("syscall", "no_such"))
    with pytest.raises(ValueError, match="unknown workload"):
        ex.run(ex.Config("no_such"))
    assert ex.cache_info().runs == 0


@pytest.mark.parametrize("field, value", [("io_mode", "virtio"), ("vmm_model", "host"),
                                          ("instances", 2), ("isolation", "namespaces")])
def test_reserved_fields_are_refused_with_a_message(field, value):
    with pytest.raises(ValueError, match=f"{field}.*reserved.*not implemented"):
        ex.Config("syscall", **{field: value})
    ex.Config("syscall", **{field: ex.RESERVED[field][0]})      # the default is accepted


def test_monitor_and_result_share_the_cache(fresh):
    config = ex.Config("syscall", "binary_translation", count=5)
    monitor = ex.monitor_of(config)
    assert monitor.ran and ex.monitor_of(config) is monitor
    result = ex.run(config)
    assert result.technique == "binary_translation" and ex.cache_info().runs == 1


def test_a_program_image_goes_through_the_same_cache(fresh):
    from kernel_sim.lessons.popek_goldberg import demo_image
    a = ex.run_image(demo_image(), "trap_emulate", strict=True)
    b = ex.run_image(demo_image(), "trap_emulate", strict=True)     # same content: same key
    assert a is b and ex.cache_info().runs == 1
    c = ex.run_image(demo_image(), "native", strict=True, key="demo")
    assert c.strict is True                 # a program runs on exactly the ISA asked for
    with pytest.raises(ValueError, match="already built"):
        ex.run_image(demo_image(), count=3)


def test_technique_questions_are_answered_by_the_monitor_classes():
    assert ex.records_exit_timeline("hw_ept") and not ex.records_exit_timeline("paravirt")
    assert ex.takes_guest_knob("paravirt", "batch") and not ex.takes_guest_knob("native", "batch")
    assert ex.default_strict("trap_emulate") and not ex.default_strict("binary_translation")
    assert ex.settings_for("native", vpid=True, trace_size=8) == {"trace_size": 8}


# ---- the measured region (experiments.measure) -------------------------------------------------
def test_the_measured_region_is_the_difference_of_two_loop_counts():
    cfg = ex.Config("syscall", "trap_emulate", strict=True, count=30)
    m = ex.measure(cfg, warmup=5)
    short = ex.run(cfg.replace(count=5))
    long = ex.run(cfg.replace(count=35))
    assert (m.operations, m.unit) == (30, "system call")
    assert m.instructions == long.instructions - short.instructions
    assert m.cycles == long.cycles - short.cycles == sum(m.cycles_by_category.values())
    assert set(m.cycles_by_category) == set(ex.REGION_CATEGORIES)
    assert set(m.counts) == set(ex.COUNT_KEYS)
    for reason, n in m.events.items():
        assert n == long.monitor_events.get(reason, 0) - short.monitor_events.get(reason, 0)
    # every system call traps into the guest kernel once: at least one trap per operation
    assert m.counts["traps"] >= m.operations
    per_op = m.per_op()
    assert per_op["cycles"] == pytest.approx(m.cycles / 30) == pytest.approx(m.cycles_per_op)
    assert per_op["counts"]["traps"] == pytest.approx(m.counts["traps"] / 30)


def test_idle_ticks_are_their_own_category_and_boot_is_one_whole_operation():
    m = ex.measure(ex.Config("boot", "native"))
    whole = ex.run(ex.Config("boot", "native"))
    assert (m.operations, m.unit, m.cycles) == (1, "boot", whole.cycles)
    assert m.cycles_by_category["idle"] == whole.events["idle_ticks"] > 0   # idle_tick = 1
    assert m.cycles_by_category["guest"] + m.cycles_by_category["idle"] == \
        whole.cycles_by_category["guest"]


def test_measure_refuses_a_bad_warmup():
    with pytest.raises(ValueError, match="warmup"):
        ex.measure(ex.Config("syscall"), warmup=0)
