"""Run one workload under several techniques and compare them (the ``compare`` command).

:func:`compare` returns ``{technique: TechniqueResult}`` (whole runs, for notebooks);
:func:`compare_contracts` returns ``{technique: contract}``, the results contract of
:func:`kernel_sim.experiments.contract` for each technique, which ``compare --json`` prints
(one JSON object keyed by technique name, in the course's technique order; schema
``$defs/compare`` of ``kernel_sim/data/results.schema.json``).  :func:`compare_table` prints what
a learner wants side by side, *per operation of the measured region* (``--count`` operations
after a warm-up, DESIGN.md section 3b): cycles per operation, the slowdown against native, the
counts per operation and the top events per operation, then the whole run's instructions and
cycles, labelled "whole run".  ``trap_emulate`` runs on the *strict* ISA unless asked otherwise
(on the non-strict one it is not equivalent -- Popek & Goldberg), and the table says which it
used.
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, Optional

from .. import experiments
from ..monitors import (TECHNIQUE_ORDER, MonitorError, available_techniques, monitor_class,
                        techniques_for)
from . import status


def _techniques(techniques: Optional[Iterable[str]], cpu: str) -> list:
    """The techniques to compare, checked, in the course's order (default: every one the CPU
    preset can run -- first-vtx has no EPT)."""
    known = available_techniques()
    names = list(techniques) if techniques else techniques_for(cpu)
    for name in names:
        if name not in known:
            raise ValueError(f"unknown technique {name!r}; available: {', '.join(known)}")
    return sorted(set(names), key=TECHNIQUE_ORDER.index)


def compare(workload: str, count: Optional[int] = None,
            techniques: Optional[Iterable[str]] = None, cpu: str = "modern",
            strict: bool = True, **knobs) -> Dict[str, object]:
    """Run ``workload`` under each technique (native first); return their results by name.

    ``strict`` applies to ``trap_emulate`` only (the other techniques do not need it); the
    native baseline runs on the same ISA as the technique it is compared with.  The runs are
    cached by :mod:`kernel_sim.experiments`, which asks each technique's monitor class for its
    guest build and ISA.
    """
    return {name: experiments.result_of(workload, name, count=count, cpu=cpu, strict=strict,
                                        knobs=knobs.get(name, {}))
            for name in _techniques(techniques, cpu)}


def compare_contracts(workload: str, count: Optional[int] = None,
                      techniques: Optional[Iterable[str]] = None, cpu: str = "modern",
                      strict: bool = True, **knobs) -> Dict[str, dict]:
    """The results contract of ``workload`` under each technique, by name: ``count``
    operations of its measured region (default: the workload's loop count)."""
    return {name: experiments.contract(experiments.Config(
                workload, name, count=count, cpu=cpu, strict=strict, knobs=knobs.get(name, {})))
            for name in _techniques(techniques, cpu)}


def _label(name: str, contract: dict) -> str:
    strict = contract["config"]["strict"]
    return name + (" (strict)" if strict else " (non-strict)"
                   if monitor_class(name).needs.strict_isa == "choice" else "")


def rate(value: float) -> str:
    """A per-operation rate for a table: two decimals, or significant digits when it is
    smaller than 0.01 but not 0 (a timer interrupt every 1,600 operations is ``0.00063``, not
    ``0.00``)."""
    if value == 0 or abs(value) >= 0.01:
        return f"{value:,.2f}"
    return f"{value:.2g}"


def compare_table(contracts: Dict[str, dict]) -> str:
    """A plain-text comparison table, one row per technique: per operation of the measured
    region, then the whole run (labelled)."""
    first = next(iter(contracts.values()))["measured"]
    unit = first["unit"]
    native = contracts.get("native")
    counts = [k for k in experiments.COUNT_KEYS
              if any(c["measured"]["counts"][k] for c in contracts.values())]
    lines = [f"per {unit} of the measured region ({first['operations']:,} operations after "
             f"{first['warmup']:,} warm-up ones), except the columns labelled \"whole run\"",
             f"{'technique':<27}{'cycles/op':>12}{'vs native':>11}"
             + "".join(f"{k + '/op':>{len(k) + 6}}" for k in counts)
             + f"{'whole run: instructions':>25}{'whole run: cycles':>19}  top events per op"]
    for name, c in contracts.items():
        m, whole = c["measured"], c["whole_run"]
        per_op = m["per_op"]
        slow = (f"{per_op['cycles'] / native['measured']['per_op']['cycles']:.2f}x"
                if native and native["measured"]["cycles"] > 0 else "-")
        top = sorted(m["events"].items(), key=lambda kv: -kv[1])[:3]
        events = ", ".join(f"{k} {rate(v / m['operations'])}" for k, v in top) or "-"
        lines.append(f"{_label(name, c):<27}{per_op['cycles']:>12,.1f}{slow:>11}"
                     + "".join(f"{rate(per_op['counts'][k]):>{len(k) + 6}}" for k in counts)
                     + f"{whole['instructions']:>25,}{whole['cycles']:>19,}  {events}")
    digests = {c["user_digest"] for c in contracts.values()}
    lines.append("user-visible state: " + ("identical under every technique" if len(digests) == 1
                                           else "DIFFERS between techniques"))
    if native is not None:
        # a paravirtual kernel is another binary: only its user-visible state is comparable
        same_kernel = [n for n in contracts if monitor_class(n).needs.same_kernel_as_native]
        differ = [n for n in same_kernel
                  if contracts[n]["state_digest"] != native["state_digest"]]
        lines.append("guest OS state (registers, memory, ticks) vs native: "
                     + ("identical" if not differ else "DIFFERS under " + ", ".join(differ)))
    return "\n".join(lines)


def _stops_status(contracts: Dict[str, dict]) -> tuple:
    """The exit status of the runs and the message for the first that did not halt."""
    for name, c in contracts.items():
        stop = c["whole_run"]["stop"]
        code = status.status_of_stop(stop)
        if code == status.BUDGET:
            return code, (f"{name}: the budget of {c['config']['budget']:,} guest instructions "
                          f"ran out before the workload finished; lower --count (operations "
                          f"of the measured region, {c['config']['count']:,} here)")
        if code != status.OK:
            return code, f"{name}: the guest stopped abnormally ({stop})"
    return status.OK, ""


def cmd_compare(args) -> int:
    techniques = [t.strip() for t in args.techniques.split(",")] if args.techniques else None
    try:
        contracts = compare_contracts(args.workload, count=args.count, techniques=techniques,
                                      cpu=args.cpu, strict=not args.no_strict)
    except MonitorError as exc:
        return status.fail(status.REFUSED, str(exc))
    except (ValueError, TypeError) as exc:
        return status.fail(status.BAD_INPUT, str(exc))
    if args.json:
        print(json.dumps(contracts))
    else:
        first = next(iter(contracts.values()))
        print(f"workload {args.workload}: {first['measured']['operations']:,} operations "
              f"(one {first['measured']['unit']} each), cpu preset {args.cpu}")
        print(compare_table(contracts))
    code, message = _stops_status(contracts)
    return status.fail(code, message) if code else code


def cmd_run_technique(args) -> int:
    """``run FILE.s --technique NAME``: the program is the guest (paravirt: PARAVIRT=1)."""
    from ..asm import AsmError, assemble, parse_defines
    from ..monitors import ProgramImage
    try:
        with open(args.file, encoding="utf-8") as f:
            source = f.read()
        defines = parse_defines(args.define)
        paravirt = bool(monitor_class(args.technique).guest_options()["paravirt"])
        if paravirt:
            defines.setdefault("PARAVIRT", 1)
        program = assemble(source, filename=args.file, defines=defines)
        image = ProgramImage.from_program(program, disk_sectors=0, paravirt=paravirt)
        result = experiments.run_image(image, args.technique, budget=args.count, cpu=args.cpu,
                                       strict=args.strict, levels=args.paging_levels,
                                       tlb_size=args.tlb_size)
    except OSError as exc:
        return status.fail(status.BAD_INPUT, f"{args.file}: cannot read: {exc.strerror}", "")
    except AsmError as exc:
        return status.fail(status.BAD_INPUT, str(exc), "")
    except MonitorError as exc:
        return status.fail(status.REFUSED, str(exc))
    except (ValueError, TypeError) as exc:
        return status.fail(status.BAD_INPUT, str(exc))
    return report_run(result, args)


def report_run(result, args) -> int:
    """Print a run's result (``--json``: one object with ``stop_description``) and return its
    exit status, with a message on stderr when it did not halt."""
    if args.json:
        out = result.as_dict()
        out["stop_description"] = result.stop_description
        print(json.dumps(out, sort_keys=True))
    else:
        print(result.text())
    code = status.status_of_stop(result.stop)
    if code == status.BUDGET:
        return status.fail(code, f"the instruction budget ran out ({args.count:,} instructions) "
                                 f"before the program halted; raise --count")
    if code != status.OK:
        return status.fail(code, f"the program stopped abnormally: {result.stop_description}")
    return code
