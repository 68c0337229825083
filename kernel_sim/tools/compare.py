"""Run one workload under several techniques and compare them (the ``compare`` command).

:func:`compare` returns ``{technique: TechniqueResult}``; :func:`compare_table` prints what a
learner wants side by side: guest instructions, simulated cycles, cycles per operation, slowdown
against native, and the monitor's events by reason.  ``trap_emulate`` runs on the *strict* ISA
unless asked otherwise (on the non-strict one it is not equivalent -- Popek & Goldberg), and the
table says which it used.
"""
from __future__ import annotations

import json
import sys
from typing import Dict, Iterable, Optional

from .. import experiments
from ..monitors import (TECHNIQUE_ORDER, MonitorError, available_techniques, monitor_class,
                        techniques_for)


def compare(workload: str, count: Optional[int] = None,
            techniques: Optional[Iterable[str]] = None, cpu: str = "modern",
            strict: bool = True, **knobs) -> Dict[str, object]:
    """Run ``workload`` under each technique (native first); return their results by name.

    ``strict`` applies to ``trap_emulate`` only (the other techniques do not need it); the
    native baseline runs on the same ISA as the technique it is compared with.  The runs are
    cached by :mod:`kernel_sim.experiments`, which asks each technique's monitor class for its
    guest build and ISA.
    """
    known = available_techniques()
    if techniques:
        names = list(techniques)
    else:                   # every technique this CPU preset can run (first-vtx has no EPT)
        names = techniques_for(cpu)
    for name in names:
        if name not in known:
            raise ValueError(f"unknown technique {name!r}; available: {', '.join(known)}")
    out = {}
    for name in sorted(set(names), key=TECHNIQUE_ORDER.index):
        out[name] = experiments.result_of(workload, name, count=count, cpu=cpu, strict=strict,
                                          knobs=knobs.get(name, {}))
    return out


def compare_table(results: Dict[str, object], operations: int) -> str:
    """A plain-text comparison table (one row per technique)."""
    native = results.get("native")
    lines = [f"{'technique':<27}{'instructions':>14}{'cycles':>14}{'cycles/op':>12}"
             f"{'vs native':>11}  top events"]
    for name, r in results.items():
        per_op = r.cycles / operations if operations else 0.0
        slow = f"{r.cycles / native.cycles:.2f}x" if native and native.cycles else "-"
        top = sorted(r.monitor_events.items(), key=lambda kv: -kv[1])[:4]
        events = ", ".join(f"{k} {v:,}" for k, v in top) or "-"
        label = name + (" (strict)" if r.strict else " (non-strict)"
                        if monitor_class(name).needs.strict_isa == "choice" else "")
        lines.append(f"{label:<27}{r.instructions:>14,}{r.cycles:>14,}{per_op:>12,.1f}"
                     f"{slow:>11}  {events}")
    digests = {r.user_digest for r in results.values()}
    lines.append("user-visible state: " + ("identical under every technique" if len(digests) == 1
                                           else "DIFFERS between techniques"))
    if native is not None:
        # a paravirtual kernel is another binary: only its user-visible state is comparable
        same_kernel = [n for n in results if monitor_class(n).needs.same_kernel_as_native]
        differ = [n for n in same_kernel if results[n].state_digest != native.state_digest]
        lines.append("guest OS state (registers, memory, ticks) vs native: "
                     + ("identical" if not differ else "DIFFERS under " + ", ".join(differ)))
    return "\n".join(lines)


def cmd_compare(args) -> int:
    from ..guest import WORKLOADS
    techniques = [t.strip() for t in args.techniques.split(",")] if args.techniques else None
    try:
        results = compare(args.workload, count=args.count, techniques=techniques, cpu=args.cpu,
                          strict=not args.no_strict)
    except (ValueError, TypeError, MonitorError) as exc:
        print(f"kernel_sim: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({name: r.summary() for name, r in results.items()}, sort_keys=True))
        return 0
    count = args.count or WORKLOADS[args.workload].default_count
    print(f"workload {args.workload}, {count} operations, cpu preset {args.cpu}")
    print(compare_table(results, count))
    return 0


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
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    except AsmError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (ValueError, TypeError, MonitorError) as exc:
        print(f"kernel_sim: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.as_dict(), sort_keys=True) if args.json else result.text())
    return 0
