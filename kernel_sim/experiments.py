"""Experiments: one cached way to run a workload under a configuration and get its results.

Every figure, dashboard, exercise check, lesson and the CLI's ``compare`` asks this module for
runs; none of them builds a guest or calls a monitor itself (DESIGN.md §2: viz, widgets and
exercises "read results, never run kernels themselves").

Design
------
* **One configuration object.**  :class:`Config` is a frozen, hashable dataclass naming
  everything a run depends on: the workload and its loop count, the technique, the CPU preset,
  the ISA strictness asked for, the guest machine (TLB size, page-table levels), the instruction
  budget, the monitor's settings (``knobs``, e.g. ``{"vpid": False}`` or
  ``{"controls": {"cr3_load_exiting": True}}``) and the guest image's settings (``guest``, e.g.
  paravirt's ``{"batch": 16}``).  Mappings are frozen into :class:`Settings` (sorted, hashable;
  a setting whose value is None means "the default" and is dropped), so two configurations that
  mean the same run are equal.
* **Reserved fields.**  ``io_mode`` (I/O virtualization: emulated device, paravirtual queue,
  passthrough), ``vmm_model`` (hypervisor / host / hybrid), ``instances`` (domains on one host)
  and ``isolation`` (containers: namespaces and cgroups) belong to the next issues (DESIGN.md
  §3c).  They default to None (``instances`` to 1) and a configuration that sets one is refused
  with a ValueError that says so, until the feature exists.
* **The technique decides, not the caller.**  :func:`normalize` asks the technique's monitor
  class (:func:`kernel_sim.monitors.monitor_class`): the guest build it runs
  (``guest_options``: plain or ``PARAVIRT=1``, and which guest knobs it takes), the ISA it runs
  on (``strict_for``: only a technique whose ``needs.strict_isa`` is ``"choice"`` honours
  ``strict=True``), whether the CPU preset can run it (``refusal``: a
  :class:`~kernel_sim.monitors.MonitorError` with the monitor's own message) and which settings
  its constructor takes (:func:`monitor_settings`).  The normalized configuration -- loop count
  filled in, strictness resolved -- is the cache key, so ``count=None`` and the workload's
  default count share one run.  No module outside ``kernel_sim/monitors`` tests a technique's
  name (a test walks the source); they ask :func:`monitor_settings`,
  :func:`records_exit_timeline` or the monitor class instead.
* **One cache, bounded in bytes.**  Results (and, for :func:`monitor_of`, the monitor that
  ran) live in one least-recently-used cache keyed by the normalized configuration.  Each entry's
  size is estimated by walking the objects it holds (NumPy arrays by ``nbytes``, strings, lists,
  dicts, dataclasses; long lists are sampled) and the total stays at or below
  :data:`DEFAULT_CACHE_BYTES` (256 MiB; change it with :func:`set_cache_limit`): inserting
  evicts the least recently used entries first, and an entry larger than the whole bound is
  returned without being kept.  A typical result is a few kilobytes; a hardware-assist result
  with a long exit timeline a few megabytes; a kept monitor holds its host memory (about
  4 MiB).  :func:`cache_info` reports hits, misses, runs, evictions, entries and bytes;
  :func:`clear_cache` empties it.
* **Programs that are not course workloads** (the Popek-Goldberg demonstration kernels, the
  CLI's ``run FILE.s --technique``) go through :func:`run_image`, which takes a ready image and
  a key (default: a digest of the image's memory, disk and entry) and uses the same cache.  Such
  a program runs on exactly the ISA asked for: for a hand-written program the ISA itself is the
  experiment (native on the strict ISA traps a ring-3 CLI that the default ISA ignores).

* **The measured region** (:func:`measure`, DESIGN.md §3b): what ``N`` operations of a
  workload's steady-state loop cost, after a fixed warm-up, found by differencing two cached
  runs (``W`` and ``W + N`` iterations), with idle time as its own category and the counts
  every experiment reports (:data:`COUNT_KEYS`).  ``boot``'s region is the whole run.

The results contract
--------------------
:func:`contract` turns a configuration into the one plain-JSON record every experiment reports
(every technique today; I/O, containers and VMM models later, all through
:func:`assemble_contract`).  ``compare --json`` prints one per technique.  Its JSON Schema is
``kernel_sim/data/results.schema.json`` (:func:`results_schema`, ``$defs/contract``), which a
test checks every CLI ``--json`` output against.  Version :data:`CONTRACT_VERSION`::

    contract_version   1
    config             the normalized configuration (Config's fields as plain JSON: count is
                       the number of operations in the measured region)
    whole_run          the run the region was measured in, from loading to its stop:
                       operations (warm-up + measured; boot: 1), instructions, cycles,
                       cycles_by_category (guest, transitions, emulation, memory, devices),
                       events (monitor events by reason), stop (how the run ended)
    measured           the measured region (DESIGN.md section 3b, :func:`measure`): operations,
                       unit (what one operation is: "system call", "page fault", ...), warmup,
                       instructions, cycles, cycles_by_category (the five and idle),
                       events (by reason), counts (every key of COUNT_KEYS, 0 where it does not
                       apply), per_op (cycles, cycles_by_category, counts divided by
                       operations), latency_ticks (guest ticks per operation)
    instances          one entry per guest (several once several domains or containers run):
                       name, role ("guest"), technique, start_cycles, memory_frames (pages of
                       guest RAM), cpu_share (1.0 alone), measured (its own region), and its
                       user_digest, state_digest, disk_digest
    path               hops {from, to, kind, cycles} of one steady-state operation, kind one of
                       results.HOP_KINDS (exit, hypercall, callout, trap, event, world_switch,
                       mode_switch, ring_copy, grant_map, dma, device_access, interrupt); empty
                       until the I/O and VMM-model experiments draw their paths
    user_digest, state_digest, disk_digest   of the whole run's final state
    cycles_by_domain   only when several domains ran (measured.cycles is then system-wide)

``counts``: ``traps`` are the deliveries the guest counts (exceptions, system calls,
interrupts) plus the traps a monitor absorbs; ``interrupts`` timer interrupts delivered;
``device_accesses`` port reads and writes; the other keys count monitor events by the kind
their technique declares (``Monitor.event_kind``; :data:`KIND_COUNTS`).  ``start_cycles`` is
where the region starts on the whole run's clock: ``whole_run.cycles - measured.cycles``, the
cycles of boot, set-up and warm-up (with the few instructions of shutdown after the loop, exit
and halt, counted as if they came first); 0 for boot, whose region is the whole run.

Example::

    from kernel_sim import experiments as ex
    r = ex.run(ex.Config("syscall", "trap_emulate", count=100, strict=True))
    r is ex.result_of("syscall", "trap_emulate", count=100, strict=True)     # cached: True
    ex.per_operation("syscall", "trap_emulate")      # events of ONE getpid call
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import numpy as np

from . import isa
from .monitors import MonitorError, monitor_class
from .results import HOP_KINDS
from .monitors.base import DEFAULT_BUDGET, GUEST_LEVELS, GUEST_TLB, Monitor

__all__ = ["Config", "Settings", "run", "result_of", "monitor_of", "run_image", "image_of",
           "normalize", "cache_info", "clear_cache", "set_cache_limit", "estimate_bytes",
           "CacheInfo", "DEFAULT_CACHE_BYTES", "BASELINE", "RESERVED", "OPERATION_COUNTS",
           "monitor_settings", "settings_for", "takes_guest_knob", "records_exit_timeline",
           "default_strict", "per_operation", "cycles_per_operation", "slowdown",
           "event_total", "MonitorError", "measure", "Measured", "WARMUP_OPERATIONS",
           "REGION_CATEGORIES", "COUNT_KEYS", "KIND_COUNTS", "HOP_KINDS", "contract",
           "assemble_contract", "instance_record", "whole_run_record", "config_dict",
           "results_schema", "CONTRACT_VERSION"]

#: The technique every slowdown is measured against (the default of :attr:`Config.technique`).
BASELINE = "native"
#: The cache's default bound: the estimated bytes of everything it keeps.
DEFAULT_CACHE_BYTES = 256 << 20
#: Loop counts of the two runs :func:`per_operation` and :func:`cycles_per_operation` subtract.
OPERATION_COUNTS = (20, 40)

#: Fields reserved for the next issues: name -> (the only value accepted today, what it is for)
RESERVED: dict[str, tuple[Any, str]] = {
    "io_mode": (None, "I/O virtualization (emulated device, paravirtual queue, passthrough "
                      "with an IOMMU)"),
    "vmm_model": (None, "the three VMM models (hypervisor, host, hybrid)"),
    "instances": (1, "several domains on one host"),
    "isolation": (None, "containers (namespaces and cgroups)"),
}


# ---- settings: hashable mappings -------------------------------------------------------------
def _freeze(value):
    if isinstance(value, Settings):
        return value
    if isinstance(value, Mapping):
        return Settings(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(_freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"a setting must be a number, a string, a bool or a mapping/sequence of "
                        f"them, got {type(value).__name__} {value!r}") from None
    return value


def _thaw(value):
    if isinstance(value, Settings):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_thaw(v) for v in value)
    return value


class Settings(Mapping):
    """An immutable, hashable mapping of setting name -> value (nested mappings frozen too).

    Built from a mapping or from (name, value) pairs; entries whose value is None are dropped
    (None means "the technique's default").  ``settings.thaw()`` gives plain dicts back.
    """

    __slots__ = ("_items", "_hash")

    def __init__(self, items=()):
        pairs = items.items() if isinstance(items, Mapping) else items
        frozen = {}
        for key, value in pairs:
            if not isinstance(key, str):
                raise TypeError(f"setting names must be strings, got {key!r}")
            if value is not None:
                frozen[key] = _freeze(value)
        self._items = tuple(sorted(frozen.items()))
        self._hash = hash(self._items)

    def __getitem__(self, key):
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self):
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if isinstance(other, Settings):
            return self._items == other._items
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self._items) + "}"

    def thaw(self) -> dict:
        """Plain (nested) dicts, as a monitor's constructor wants them."""
        return _thaw(self)


# ---- the configuration ----------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Everything one run depends on (frozen, hashable: the cache's key once normalized).

    ``workload``: a key of :data:`kernel_sim.guest.WORKLOADS`.  ``technique``: a name of
    :data:`kernel_sim.monitors.TECHNIQUE_ORDER`.  ``cpu``: a CPU preset of
    :data:`kernel_sim.costs.CPU_PRESETS`.  ``count``: the workload's loop count (None: its
    default).  ``strict``: the strict ISA *asked for* (the technique decides, see
    :func:`normalize`).  ``knobs``: the monitor's own settings (``vpid``, ``controls``,
    ``ept_levels``, ``mode``, ``cache_size``, ``max_roots``, ...).  ``guest``: settings of the
    guest image the technique declares (``batch`` for paravirt).  ``tlb_size``, ``levels``: the
    guest machine.  ``budget``: the most guest instructions the run may execute.

    Reserved, refused until implemented: ``io_mode``, ``vmm_model``, ``instances`` (must be 1),
    ``isolation`` (see :data:`RESERVED`).
    """

    workload: str
    technique: str = BASELINE
    cpu: str = "modern"
    count: Optional[int] = None
    strict: bool = False
    knobs: Settings = Settings()
    guest: Settings = Settings()
    tlb_size: int = GUEST_TLB
    levels: int = GUEST_LEVELS
    budget: int = DEFAULT_BUDGET
    io_mode: Optional[str] = None
    vmm_model: Optional[str] = None
    instances: int = 1
    isolation: Optional[str] = None

    def __post_init__(self):
        object.__setattr__(self, "knobs", Settings(self.knobs or ()))
        object.__setattr__(self, "guest", Settings(self.guest or ()))
        if not isinstance(self.strict, (bool, np.bool_)):
            raise TypeError(f"strict must be True or False, got {self.strict!r}")
        object.__setattr__(self, "strict", bool(self.strict))
        for name, (allowed, purpose) in RESERVED.items():
            value = getattr(self, name)
            if value != allowed:
                raise ValueError(f"{name}={value!r}: this field is reserved for {purpose} and "
                                 f"not implemented yet (leave it at {allowed!r})")

    def replace(self, **changes) -> "Config":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


#: Settings that are fields of :class:`Config`, not knobs.
_FIELDS_NOT_KNOBS = ("cpu", "strict", "levels", "tlb_size")


def monitor_settings(technique: str) -> frozenset:
    """The settings a technique's monitor takes as knobs: the keyword parameters of its
    constructor and its base classes' (read from the class, so a new setting needs no list
    here), without those that are :class:`Config` fields (cpu, strict, levels, tlb_size)."""
    cls = monitor_class(technique)
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or not issubclass(klass, Monitor):
            continue
        for p in list(inspect.signature(init).parameters.values())[2:]:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.add(p.name)
    return frozenset(names - set(_FIELDS_NOT_KNOBS))


def settings_for(technique: str, **knobs) -> dict:
    """Only the ``knobs`` the technique's monitor takes (a figure that sweeps a knob over
    several techniques passes it to each; the ones without it run without it)."""
    accepted = monitor_settings(technique)
    return {k: v for k, v in knobs.items() if k in accepted}


def takes_guest_knob(technique: str, knob: str) -> bool:
    """Does the technique's guest image take ``knob`` (paravirt: ``batch``)?"""
    return knob in monitor_class(technique).needs.guest_knobs


def records_exit_timeline(technique: str) -> bool:
    """Is the technique's monitor a VMCS-based one, whose every monitor event is a VM exit
    recorded on the exit timeline?  (Its class declares it: ``needs.vm_exits``.)"""
    return monitor_class(technique).needs.vm_exits


def default_strict(technique: str) -> bool:
    """The ISA the course runs a technique on unless told otherwise: the strict one wherever the
    technique lets the learner choose (trap-and-emulate is not equivalent without it)."""
    return monitor_class(technique).strict_for(True)


def _check_budget(budget) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive number of instructions, got {budget!r}")
    return int(budget)


def _normalize_run(config: Config) -> Config:
    """What every configuration needs, course workload or program: known technique, settings
    the monitor takes, a CPU preset it can run on."""
    cls = monitor_class(config.technique)          # ValueError for an unknown technique
    accepted = monitor_settings(config.technique)
    for name in config.knobs:
        if name in _FIELDS_NOT_KNOBS:
            raise ValueError(f"{name} is a field of the configuration, not a knob: "
                             f"Config(..., {name}=...)")
        if name not in accepted:
            raise ValueError(f"{name} does not apply to {config.technique}; its settings: "
                             f"{', '.join(sorted(accepted)) or '(none)'}")
    refused = cls.refusal(config.cpu, **config.knobs.thaw())
    if refused:
        raise MonitorError(refused)
    _check_budget(config.budget)
    return config


def normalize(config: Config) -> Config:
    """The configuration as it will run (the cache key): checked, the loop count filled in, the
    strictness the technique runs with (``strict_for``).  Raises ValueError for a bad value and
    :class:`~kernel_sim.monitors.MonitorError` with the monitor's message for a combination it
    refuses (``hw_ept`` on ``first-vtx``...)."""
    from .guest import MAX_COUNT, _check_workload
    from .machine import check_int
    if not isinstance(config, Config):
        raise TypeError(f"expected a Config, got {type(config).__name__}")
    spec = _check_workload(config.workload)
    count = spec.default_count if config.count is None else \
        check_int("count", config.count, 1, MAX_COUNT)
    cls = monitor_class(config.technique)
    cls.guest_options(**config.guest.thaw())      # ValueError for a knob it does not take
    config = _normalize_run(config)
    strict = cls.strict_for(config.strict)
    if (count, strict) != (config.count, config.strict):
        config = config.replace(count=count, strict=strict)
    return config


def image_of(config: Config):
    """The guest image a configuration runs (built, not cached: a few milliseconds)."""
    from .guest import build_guest
    config = normalize(config)
    options = monitor_class(config.technique).guest_options(**config.guest.thaw())
    return build_guest(config.workload, count=config.count, **options)


# ---- the cache ------------------------------------------------------------------------------
class CacheInfo(NamedTuple):
    hits: int
    misses: int
    runs: int           #: monitors actually run (a miss that raised is not a run)
    evictions: int
    entries: int
    bytes: int          #: estimated size of everything kept
    limit: int          #: the bound on ``bytes``


class _Cache:
    def __init__(self, limit: int):
        self.lock = threading.RLock()
        self.entries: OrderedDict = OrderedDict()       # key -> (value, size)
        self.bytes = 0
        self.limit = limit
        self.hits = self.misses = self.runs = self.evictions = 0

    def get(self, key):
        with self.lock:
            item = self.entries.get(key)
            if item is None:
                return None
            self.entries.move_to_end(key)
            return item[0]

    def put(self, key, value, size: int) -> None:
        with self.lock:
            if key in self.entries:
                self.bytes -= self.entries.pop(key)[1]
            if size > self.limit:
                return                      # larger than the whole bound: not kept
            while self.entries and self.bytes + size > self.limit:
                _, (_, old) = self.entries.popitem(last=False)
                self.bytes -= old
                self.evictions += 1
            self.entries[key] = (value, size)
            self.bytes += size

    def shrink(self) -> None:
        with self.lock:
            while self.entries and self.bytes > self.limit:
                _, (_, old) = self.entries.popitem(last=False)
                self.bytes -= old
                self.evictions += 1


_CACHE = _Cache(DEFAULT_CACHE_BYTES)


def cache_info() -> CacheInfo:
    """Hits, misses, runs, evictions, entries, estimated bytes and the bound of the cache."""
    c = _CACHE
    with c.lock:
        return CacheInfo(c.hits, c.misses, c.runs, c.evictions, len(c.entries), c.bytes, c.limit)


def clear_cache() -> None:
    """Forget every kept run (the counters start again from zero)."""
    with _CACHE.lock:
        _CACHE.entries.clear()
        _CACHE.bytes = 0
        _CACHE.hits = _CACHE.misses = _CACHE.runs = _CACHE.evictions = 0


def set_cache_limit(nbytes: int) -> int:
    """Bound the cache to ``nbytes`` estimated bytes (evicting at once if needed); returns the
    previous bound."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"the cache limit must be a number of bytes >= 0, got {nbytes!r}")
    with _CACHE.lock:
        old, _CACHE.limit = _CACHE.limit, nbytes
        _CACHE.shrink()
    return old


_ATOMS = (int, float, complex, bool, type(None), str, bytes, bytearray)
_SAMPLE = 64


def estimate_bytes(obj, _seen: Optional[set] = None, _depth: int = 0) -> int:
    """Estimated memory held by ``obj``: NumPy arrays by ``nbytes``, containers, dataclasses
    and plain objects by their parts (each object once; lists longer than 64 items estimated
    from a sample).  Modules, classes and functions count as nothing (they are shared)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen or _depth > 12:
        return 0
    seen.add(id(obj))
    if isinstance(obj, _ATOMS):
        return sys.getsizeof(obj)
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base
        if base is not obj and id(base) in seen:
            return 64
        seen.add(id(base))
        return 112 + int(obj.nbytes)
    if inspect.ismodule(obj) or callable(obj):      # classes, functions, jitted kernels
        return 0
    size = sys.getsizeof(obj, 64)
    d = _depth + 1
    if isinstance(obj, Mapping):
        return size + sum(estimate_bytes(k, seen, d) + estimate_bytes(v, seen, d)
                          for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
        if len(items) > _SAMPLE:
            step = len(items) // _SAMPLE
            sample = items[::step][:_SAMPLE]
            part = sum(estimate_bytes(x, set(seen), d) for x in sample)
            return size + part * len(items) // len(sample)
        return size + sum(estimate_bytes(x, seen, d) for x in items)
    parts = getattr(obj, "__dict__", None)
    if parts is not None:
        size += estimate_bytes(parts, seen, d)
    for slot in getattr(type(obj), "__slots__", ()):
        if isinstance(slot, str) and hasattr(obj, slot):
            size += estimate_bytes(getattr(obj, slot), seen, d)
    return size


def _cached(key, make):
    """``make()`` once per key: returns ``(value, ran)``; the value is kept in the cache."""
    value = _CACHE.get(key)
    with _CACHE.lock:
        if value is not None:
            _CACHE.hits += 1
            return value
        _CACHE.misses += 1
    value = make()
    with _CACHE.lock:
        _CACHE.runs += 1
    _CACHE.put(key, value, estimate_bytes(value))
    return value


def _execute(config: Config, image):
    """Build the monitor for an already-normalized configuration, run it: (monitor, result)."""
    cls = monitor_class(config.technique)
    monitor = cls(image, cpu=config.cpu, strict=config.strict, levels=config.levels,
                  tlb_size=config.tlb_size, **config.knobs.thaw())
    return monitor, monitor.run(config.budget)


# ---- the entry points ------------------------------------------------------------------------
def run(config: Config):
    """The :class:`~kernel_sim.results.TechniqueResult` of ``config`` (run once, then cached:
    the same configuration returns the same object)."""
    key = normalize(config)
    kept = _CACHE.get(("monitor", key))
    if kept is not None:
        with _CACHE.lock:
            _CACHE.hits += 1
        return kept[1]
    return _cached(("result", key), lambda: _execute(key, image_of(key))[1])


def result_of(workload: str, technique: str = BASELINE, **fields):
    """``run(Config(workload, technique, **fields))``; ``knobs`` and ``guest`` may be dicts."""
    return run(Config(workload, technique, **fields))


def monitor_of(config: Config):
    """The monitor that ran ``config`` (cached like :func:`run`), for what only the monitor
    holds: a translation cache to disassemble, the nested table's pages...  The result is
    ``monitor_of(config).result()`` and equals :func:`run`'s."""
    key = normalize(config)
    return _cached(("monitor", key), lambda: _execute(key, image_of(key)))[0]


def _image_digest(image) -> str:
    h = hashlib.sha1()
    for part in (np.ascontiguousarray(image.ram), np.ascontiguousarray(image.disk)):
        h.update(part.tobytes())
    h.update(repr((int(image.entry), int(image.ram_size), int(image.disk_sectors),
                   bool(getattr(image, "paravirt", False)))).encode())
    return h.hexdigest()


def run_image(image, technique: str = BASELINE, *, key=None, **fields):
    """Run a ready guest image -- a program that is not a course workload -- and cache its
    result like :func:`run`.  ``key`` names the image (hashable; default: a digest of its
    memory, disk and entry point); ``fields`` are those of :class:`Config` except ``workload``,
    ``count`` and ``guest`` (the image is already built).  The ISA is exactly ``strict``: for a
    hand-written program the ISA is the experiment."""
    for name in ("workload", "count", "guest"):
        if name in fields:
            raise ValueError(f"{name} belongs to course workloads; an image is already built")
    config = _normalize_run(Config("(image)", technique, **fields))
    ident = ("image", _image_digest(image) if key is None else key, config)
    return _cached(ident, lambda: _execute(config, image)[1])


# ---- reading results: numbers the course shows ------------------------------------------------
def event_total(result, prefix: str = "") -> int:
    """The monitor events of a result whose reason starts with ``prefix`` (all: ``""``)."""
    return int(sum(v for k, v in result.monitor_events.items() if k.startswith(prefix)))


def slowdown(result, baseline) -> float:
    """Simulated cycles of ``result`` divided by those of ``baseline`` (how many times slower)."""
    if baseline.cycles <= 0:
        raise ValueError("the baseline ran no cycles: there is nothing to compare with")
    return result.cycles / baseline.cycles


def _check_counts(counts) -> tuple[int, int]:
    lo, hi = counts
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo < hi):
        raise ValueError(f"counts must be two loop counts 1 <= lo < hi, got {counts!r}")
    return lo, hi


def _pair(workload, technique, counts, strict, fields):
    lo, hi = _check_counts(counts)
    strict = default_strict(technique) if strict is None else bool(strict)
    return lo, hi, [result_of(workload, technique, count=c, strict=strict, **fields)
                    for c in (lo, hi)]


def per_operation(workload: str, technique: str, strict: Optional[bool] = None,
                  counts: tuple[int, int] = OPERATION_COUNTS, **fields) -> dict[str, float]:
    """Monitor events per iteration of ``workload``'s loop, by reason (non-zero ones only).

    The workload runs twice, with the loop counts ``counts = (lo, hi)``; the difference of every
    event count is divided by ``hi - lo``, so what boot and shutdown cost cancels out.  Values
    are rounded to two decimals.  ``strict`` None: :func:`default_strict`; ``fields`` are
    :class:`Config` fields (``cpu``, ``knobs``...).
    """
    lo, hi, (a, b) = _pair(workload, technique, counts, strict, fields)
    a, b = a.monitor_events, b.monitor_events
    out = {}
    for reason in sorted(set(a) | set(b)):
        value = round((b.get(reason, 0) - a.get(reason, 0)) / (hi - lo), 2)
        if value:
            out[reason] = value
    return out


def cycles_per_operation(workload: str, technique: str,
                         counts: tuple[int, int] = OPERATION_COUNTS,
                         strict: Optional[bool] = None, **fields) -> float:
    """Simulated cycles of one iteration of ``workload``'s loop under ``technique``: the
    difference of two runs with loop counts ``counts = (lo, hi)``, divided by ``hi - lo``."""
    lo, hi, (a, b) = _pair(workload, technique, counts, strict, fields)
    return (b.cycles - a.cycles) / (hi - lo)


# ---- the measured region (DESIGN.md §3b) -------------------------------------------------------
#: Loop iterations every measurement runs *before* its region starts, so that translation
#: caches, shadow tables and TLBs are warm: the region is steady state, as in the papers'
#: nanobenchmarks (Adams & Agesen 2006 time a loop, not a boot).
WARMUP_OPERATIONS = 10
#: Cycle categories of a measured region: the monitors' five, and ``idle`` (halted, waiting for
#: the timer), which is nobody's work and is reported apart.
REGION_CATEGORIES = ("guest", "transitions", "emulation", "memory", "devices", "idle")
#: The kinds of ``Measured.counts``: every key is always present (0 where it does not apply).
COUNT_KEYS = ("exits", "hypercalls", "callouts", "traps", "world_switches", "mode_switches",
              "notifications", "interrupts", "evtchn_sends", "ring_copies", "device_accesses")
#: The count a monitor event of each :data:`~kernel_sim.results.HOP_KINDS` kind adds to (a
#: ``grant_map`` or a ``dma`` has no count of its own; ``evtchn_sends`` are counted by the
#: platform that sends them).
KIND_COUNTS = {"exit": "exits", "hypercall": "hypercalls", "callout": "callouts", "trap": "traps",
               "world_switch": "world_switches", "mode_switch": "mode_switches",
               "event": "notifications", "interrupt": "interrupts", "ring_copy": "ring_copies",
               "device_access": "device_accesses"}


@dataclass(frozen=True)
class Measured:
    """What the measured region of a workload cost: ``operations`` operations of one ``unit``
    (one iteration of the workload's loop), after :data:`WARMUP_OPERATIONS` warm-up ones.

    The region is found by *differencing two loop counts*: the workload runs with ``W`` and
    with ``W + N`` iterations (``W`` = :data:`WARMUP_OPERATIONS`, ``N`` = ``operations``), and
    every figure is the second run's minus the first's.  Both runs boot the same way, warm up
    the same way and shut down the same way, so all of that cancels and what is left is exactly
    the ``N`` extra iterations -- under every technique alike, with no marker instruction that
    could itself cost an exit.  (What does not cancel exactly: the phase of the periodic timer,
    whose interrupts fall where the tick count says; over hundreds of operations it averages
    out, see the tests.)
    """

    workload: str
    technique: str
    operations: int
    unit: str
    instructions: int
    cycles: int
    cycles_by_category: Mapping
    events: Mapping
    counts: Mapping
    latency_ticks: float
    #: operations run before the region (0 when the region is the whole run: boot)
    warmup: int = WARMUP_OPERATIONS

    def per_op(self) -> dict:
        """``cycles``, ``cycles_by_category`` and ``counts`` divided by ``operations``."""
        n = self.operations
        return {"cycles": self.cycles / n,
                "cycles_by_category": {k: v / n for k, v in self.cycles_by_category.items()},
                "counts": {k: v / n for k, v in self.counts.items()}}

    @property
    def cycles_per_op(self) -> float:
        return self.cycles / self.operations

    def as_dict(self) -> dict:
        """The ``measured`` record of the results contract (plain JSON types)."""
        return {"operations": int(self.operations), "unit": self.unit,
                "warmup": int(self.warmup), "instructions": int(self.instructions),
                "cycles": int(self.cycles),
                "cycles_by_category": {k: int(v) for k, v in self.cycles_by_category.items()},
                "events": {k: int(v) for k, v in self.events.items()},
                "counts": {k: int(v) for k, v in self.counts.items()},
                "per_op": self.per_op(), "latency_ticks": float(self.latency_ticks)}


def _region_categories(result) -> dict:
    """Cycles by :data:`REGION_CATEGORIES`: the cycles charged for idle ticks are taken out of
    ``guest``, where the CPU's own count puts them.  The emulator charges its guest's idle
    ticks no cycles at all (its guest work is all ``emulation``), so under ``emulation`` the
    bound below leaves ``idle`` at 0 -- a known gap of the emulator's cost model, not of this
    split."""
    from .costs import NATIVE_EXTRAS
    out = {c: int(result.cycles_by_category.get(c, 0)) for c in REGION_CATEGORIES}
    idle = int(result.events.get("idle_ticks", 0)) * NATIVE_EXTRAS.get("idle_tick", 0)
    idle = min(idle, out["guest"])
    out["guest"] -= idle
    out["idle"] += idle
    return out


def _counts(result, technique: str) -> dict:
    """The run's :data:`COUNT_KEYS`: ``traps`` (every delivery the guest counts: exceptions,
    system calls, interrupts), ``interrupts`` (timer interrupts delivered) and
    ``device_accesses`` (port reads and writes) from the guest-visible counters; to those, each
    monitor event adds one to the count of the kind its technique declares for it
    (:meth:`~kernel_sim.monitors.base.Monitor.event_kind`, through :data:`KIND_COUNTS`), so a
    privileged instruction trap-and-emulate absorbs is one more ``trap`` and a VM exit one
    ``exit``."""
    kind_of = monitor_class(technique).event_kind
    out = dict.fromkeys(COUNT_KEYS, 0)
    out["traps"] = int(result.events.get("traps", 0))
    out["interrupts"] = int(result.traps.get(isa.VECTOR_KEYS[isa.VEC_TIMER], 0))
    out["device_accesses"] = int(result.events.get("io_in", 0) + result.events.get("io_out", 0))
    for reason, n in result.monitor_events.items():
        key = KIND_COUNTS.get(kind_of(reason))
        if key is not None:
            out[key] += int(n)
    return out


class _Nothing:
    """A run in which nothing happened (what the whole-run region subtracts)."""
    instructions = cycles = 0
    cycles_by_category: dict = {}
    monitor_events: dict = {}
    events: dict = {}
    traps: dict = {}


_ZERO = _Nothing()


def measure(config: Config, warmup: int = WARMUP_OPERATIONS) -> Measured:
    """The measured region of ``config``: ``config.count`` operations (default: the workload's
    loop count) after ``warmup`` warm-up operations, by differencing two cached runs."""
    return _region(config, warmup)[0]


def _region(config: Config, warmup: int):
    """``(Measured, the whole run, the normalized configuration)`` of ``config``'s region."""
    from .guest import WORKLOADS
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 1:
        raise ValueError(f"warmup must be a positive number of operations, got {warmup!r}")
    base = normalize(config)
    workload = WORKLOADS[base.workload]
    if workload.region == "whole":          # boot: the whole run is the one operation
        n, after, before, warmup = 1, run(base), None, 0
    else:
        n = int(base.count)
        before = run(base.replace(count=warmup))
        after = run(base.replace(count=warmup + n))
    return _difference(base, workload, n, before, after, warmup), after, base


def _difference(base: Config, workload, n: int, before, after, warmup: int) -> Measured:
    """``after`` minus ``before`` (None: nothing) as the region of ``n`` operations."""
    if before is None:
        before = _ZERO
    cb, ca = _region_categories(before), _region_categories(after)
    events = {k: int(after.monitor_events.get(k, 0) - before.monitor_events.get(k, 0))
              for k in set(after.monitor_events) | set(before.monitor_events)}
    kb, ka = _counts(before, base.technique), _counts(after, base.technique)
    ticks = (after.events.get("instructions", 0) + after.events.get("idle_ticks", 0)
             - before.events.get("instructions", 0) - before.events.get("idle_ticks", 0))
    return Measured(workload=base.workload, technique=base.technique, operations=n,
                    unit=workload.unit, instructions=after.instructions - before.instructions,
                    cycles=after.cycles - before.cycles,
                    cycles_by_category={c: ca[c] - cb[c] for c in REGION_CATEGORIES},
                    events={k: v for k, v in sorted(events.items()) if v},
                    counts={k: ka[k] - kb[k] for k in COUNT_KEYS},
                    latency_ticks=ticks / n, warmup=warmup)


# ---- the results contract ---------------------------------------------------------------------
#: The version of the results contract; ``kernel_sim/data/results.schema.json`` describes it.
CONTRACT_VERSION = 1
#: Where the contract's JSON Schema lives inside the package (package data).
SCHEMA_RESOURCE = ("data", "results.schema.json")


def results_schema() -> dict:
    """The JSON Schema (draft 2020-12) of the results contract and of every CLI ``--json``
    output (``$defs``: ``contract``, ``compare``, ``run``, ``technique_run``, ``pagewalk``)."""
    import json
    from importlib.resources import files
    return json.loads(files("kernel_sim").joinpath(*SCHEMA_RESOURCE).read_text("utf-8"))


def config_dict(config: Config) -> dict:
    """``config`` as plain JSON types (settings as dicts, every field present)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = _plain(value.thaw() if isinstance(value, Settings) else value)
    return out


def _plain(value):
    """Plain JSON types: tuples become lists, frozensets sorted lists, NumPy scalars Python's."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def whole_run_record(result, operations: int) -> dict:
    """The ``whole_run`` record of a result: what the run did from loading to its stop."""
    return {"operations": int(operations), "instructions": int(result.instructions),
            "cycles": int(result.cycles),
            "cycles_by_category": {k: int(v) for k, v in result.cycles_by_category.items()},
            "events": {k: int(v) for k, v in result.monitor_events.items()},
            "stop": result.stop}


def instance_record(*, name: str, role: str, technique: str, start_cycles: int,
                    memory_frames: int, cpu_share: float, measured: dict, result) -> dict:
    """One entry of a contract's ``instances``: a guest (or, later, a container or a domain of
    several) with its share of the machine, its own measured region and its digests."""
    return {"name": name, "role": role, "technique": technique,
            "start_cycles": int(start_cycles), "memory_frames": int(memory_frames),
            "cpu_share": float(cpu_share), "measured": measured,
            "user_digest": result.user_digest, "state_digest": result.state_digest,
            "disk_digest": result.disk_digest}


def assemble_contract(*, config: dict, whole: dict, measured: dict, instances: list, digests,
                      path=(), cycles_by_domain: Optional[dict] = None) -> dict:
    """The results contract from its parts -- the one constructor every experiment kind uses
    (:func:`contract` for one guest; several domains, I/O paths and containers later).

    ``digests`` is the result whose ``user_digest``, ``state_digest`` and ``disk_digest`` the
    contract reports (with several domains: the system's).  ``path`` is a list of hops
    ``{"from", "to", "kind", "cycles"}`` with ``kind`` in :data:`~kernel_sim.results.HOP_KINDS`;
    ``cycles_by_domain`` is given only when several domains ran.
    """
    hops = [{"from": str(h["from"]), "to": str(h["to"]), "kind": h["kind"],
             "cycles": int(h["cycles"])} for h in path]
    for hop in hops:
        if hop["kind"] not in HOP_KINDS:
            raise ValueError(f"unknown hop kind {hop['kind']!r}; the kinds: "
                             f"{', '.join(HOP_KINDS)}")
    out = {"contract_version": CONTRACT_VERSION, "config": config, "whole_run": whole,
           "measured": measured, "instances": list(instances), "path": hops,
           "user_digest": digests.user_digest, "state_digest": digests.state_digest,
           "disk_digest": digests.disk_digest}
    if cycles_by_domain is not None:
        out["cycles_by_domain"] = {str(k): int(v) for k, v in cycles_by_domain.items()}
    return out


def contract(config: Config, warmup: int = WARMUP_OPERATIONS) -> dict:
    """The results contract of ``config`` (plain JSON types; see the module docstring): its
    measured region (:func:`measure`: ``config.count`` operations after ``warmup``), the whole
    run the region was measured in (``warmup + count`` operations; boot: the one run), one
    instance, no path hops yet, the digests and the normalized configuration."""
    m, whole, base = _region(config, warmup)
    measured = m.as_dict()
    memory = int(image_of(base).ram_size) // isa.PAGE_SIZE
    guest = instance_record(name="guest0", role="guest", technique=base.technique,
                            start_cycles=whole.cycles - m.cycles, memory_frames=memory,
                            cpu_share=1.0, measured=dict(measured), result=whole)
    return assemble_contract(config=config_dict(base),
                             whole=whole_run_record(whole, m.warmup + m.operations),
                             measured=measured, instances=[guest], digests=whole)
