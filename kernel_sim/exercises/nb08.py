"""Exercises of notebook 08 (memory virtualization).  Expected values come from the simulator.

* 08.1 -- memory references of one cold TLB miss with a 3-level guest table over a 4-level
  nested table (a walk run through the simulated MMU; it must agree with (n+1)(m+1) - 1);
* 08.2 -- which memory mode needs fewer simulated cycles for ``ctxswitch`` on the ``modern``
  preset (both runs made by the checker);
* 08.3 -- how many TLB misses VPID saves for ``pgfault`` under ``hw_ept`` (two runs);
* 08.4 -- how many distinct guest-physical pages ``compute`` touches, read from its
  EPT_VIOLATION exits (the checker also counts the pages the nested table maps afterwards).
"""
from __future__ import annotations

from . import exercise

#: exercise 08.1: guest levels n and nested levels m
WALK_081 = (3, 4)
#: exercise 08.2: workload, loop count, CPU preset, TLB entries
MODES_082 = ("ctxswitch", 100, "modern", 64)
#: exercise 08.3: workload, loop count, CPU preset, TLB entries
VPID_083 = ("pgfault", 100, "nehalem", 64)
#: exercise 08.4: workload, loop count, CPU preset
PAGES_084 = ("compute", 2000, "nehalem")


def _as_int(answer):
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"expected a whole number, got {type(answer).__name__} {answer!r}")
    return answer


def walk_references(guest_levels: int, nested_levels: int) -> int:
    """References of one cold walk, counted by the simulated MMU (and checked against the
    formula of Bhargava et al. 2008: a disagreement is a bug, raised as RuntimeError)."""
    from ..lessons.pagewalk import expected_references, pagewalk
    refs = pagewalk(guest_levels, nested_levels).references
    if refs != expected_references(guest_levels, nested_levels):
        raise RuntimeError(f"the simulated walk made {refs} references, the formula says "
                           f"{expected_references(guest_levels, nested_levels)}")
    return refs


def mode_cycles(workload: str, count: int, cpu: str, tlb_size: int) -> dict:
    """``{mode: simulated cycles}`` of ``workload`` under hw_shadow and hw_ept."""
    from ..experiments import result_of
    from ..lessons.memory import MODES
    return {mode: result_of(workload, mode, count=count, cpu=cpu, tlb_size=tlb_size).cycles
            for mode in MODES}


def vpid_misses(workload: str, count: int, cpu: str, tlb_size: int) -> dict:
    """``{vpid: TLB misses}`` of ``workload`` under hw_ept with VPID on (True) and off."""
    from ..experiments import result_of
    return {v: int(result_of(workload, "hw_ept", count=count, cpu=cpu, tlb_size=tlb_size,
                             knobs={"vpid": v}).events["tlb_misses"]) for v in (True, False)}


def touched_pages(workload: str, count: int, cpu: str) -> tuple[int, int]:
    """(EPT_VIOLATION exits, guest pages the nested table maps at the end) of one hw_ept run."""
    from ..experiments import Config, monitor_of, run
    config = Config(workload, "hw_ept", count=count, cpu=cpu)
    monitor, result = monitor_of(config), run(config)
    return int(result.monitor_events.get("EPT_VIOLATION", 0)), int(monitor.nested.mapped)


def _mode_name(answer):
    from ..lessons.memory import MODES
    if not isinstance(answer, str):
        return None
    name = answer.strip().lower().replace("-", "_")
    if name in ("shadow", "ept"):
        name = "hw_" + name
    return name if name in MODES else None


@exercise("08.1", "References of a two-dimensional walk",
          hints=["Use the walk explorer with 3 guest levels and 4 nested levels, or "
                 "pagewalk(3, 4).references.",
                 "Each of the n guest entries needs m nested reads plus its own read, and the "
                 "data's guest-physical address needs one more nested walk: n(m+1) + m."])
def _check_walk(answer):
    n, m = WALK_081
    expected = walk_references(n, m)
    given = _as_int(answer)
    if given == n * m:
        return False, ("n x m counts only the nested reads made for the guest entries: the "
                       "guest entries themselves and the final nested walk are missing")
    if given == (n + 1) * (m + 1):
        return False, "one too many: the data access itself is not part of the walk"
    if given != expected:
        return False, f"{given} is not the number of references of a {n}-over-{m} cold walk"
    return True, (f"{expected} references, counted by running the walk through the simulated "
                  f"MMU: ({n}+1)({m}+1) - 1, against {n} natively")


@exercise("08.2", "The cheaper memory mode for ctxswitch on a modern CPU",
          hints=["Run build_guest('ctxswitch', 100) under 'hw_shadow' and 'hw_ept' with "
                 "cpu='modern' and compare the results' cycles.",
                 "Answer 'hw_shadow' or 'hw_ept'. Look at where the cycles go: transitions "
                 "(exits) against memory (nested walk references)."])
def _check_mode(answer):
    workload, count, cpu, tlb = MODES_082
    cycles = mode_cycles(workload, count, cpu, tlb)
    name = _mode_name(answer)
    if name is None:
        return False, f"answer 'hw_shadow' or 'hw_ept', got {answer!r}"
    best = min(cycles, key=cycles.get)
    other = next(m for m in cycles if m != best)
    if name != best:
        return False, f"{name} is not the cheaper mode for {workload} on the {cpu} preset"
    return True, (f"{best}: {cycles[best]:,} simulated cycles against {cycles[other]:,} for "
                  f"{other} ({workload}, {count} iterations, {cpu} preset, {tlb}-entry TLB; "
                  "the cycle costs are model assumptions)")


@exercise("08.3", "TLB misses saved by VPID",
          hints=["Run build_guest('pgfault', 100) under 'hw_ept' on the nehalem preset with "
                 "vpid=True and with vpid=False, and compare events['tlb_misses'].",
                 "Answer the difference: misses without VPID minus misses with VPID."])
def _check_vpid(answer):
    workload, count, cpu, tlb = VPID_083
    misses = vpid_misses(workload, count, cpu, tlb)
    expected = misses[False] - misses[True]
    given = _as_int(answer)
    if given in (misses[True], misses[False]):
        return False, "that is the number of misses of one of the two runs, not the difference"
    if given == -expected:
        return False, "the sign is the wrong way round: VPID saves misses"
    if given != expected:
        return False, f"{given} is not the number of TLB misses VPID saves"
    return True, (f"{misses[False]:,} misses without VPID, {misses[True]:,} with it: VPID "
                  f"saves {expected:,} (without it every VM entry and exit flushes the TLB)")


@exercise("08.4", "Guest pages touched, counted by EPT violations",
          hints=["Run build_guest('compute', 2000) under 'hw_ept' (cpu='nehalem') and read "
                 "monitor_events['EPT_VIOLATION'].",
                 "The nested table starts empty: each guest-physical page exits once, the "
                 "first time the guest (or its page walk) touches it."])
def _check_pages(answer):
    workload, count, cpu = PAGES_084
    violations, mapped = touched_pages(workload, count, cpu)
    if violations != mapped:
        raise RuntimeError(f"{violations} EPT violations but {mapped} pages mapped: the "
                           "monitor should map exactly one page per violation")
    given = _as_int(answer)
    if given != violations:
        return False, f"{given} is not the number of guest-physical pages {workload} touches"
    return True, (f"{violations} EPT_VIOLATION exits, and the nested table maps {mapped} guest "
                  "pages at the end of the run: one exit per distinct page touched")
