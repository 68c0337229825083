"""Command line: ``python -m kernel_sim <command>``.

Commands
--------
``run FILE.s``   assemble and run a program, print the report (``--json`` for one JSON object)
``warmup``       compile the jitted kernels into Numba's on-disk cache (run once after install)
``lab``          open the course in JupyterLab (what ``make lab`` does)
``isa``          print the ISA reference (instructions, classes, vectors, ports, system calls)
``compare``      run one guest-OS workload under several virtualization techniques, print a table
``pagewalk``     one cold TLB miss on the MMU, reference by reference: ``--guest-levels N
                 --nested-levels M`` (M = 0: a native walk; ``--json`` for one JSON object)

Every command with ``--json`` prints one JSON object that ``kernel_sim/data/results.schema.json``
describes: ``compare`` the results contract of each technique (``{technique: contract}``, see
:mod:`kernel_sim.experiments`), ``run`` and ``run --technique`` the run's result, ``pagewalk`` the
walk.  Experiment commands share their options: ``--count`` is the number of operations of the
measured region, ``--cpu`` the CPU preset, techniques by their names.

Exit status (one table for every command, :mod:`kernel_sim.tools.status`):

====  ==========================================================================================
0     the guest halted normally (``pagewalk``: the walk was printed)
2     bad input: malformed assembly (``FILE:LINE:COL: message``, never a traceback), a file that
      cannot be read, a bad number, an unknown name
3     the guest stopped on an unhandled trap or a triple fault
4     the instruction budget ran out (the message names ``--count``)
5     a monitor refused the combination (``hw_ept`` on ``first-vtx``) or could not continue
====  ==========================================================================================
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    from .tools.status import help_text
    p = argparse.ArgumentParser(prog="python -m kernel_sim",
                                description="kernel_sim: learn virtualization by running it.",
                                epilog=help_text(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="assemble and run a program, print the report")
    r.add_argument("file", help="assembly source file (.s)")
    r.add_argument("--ring", type=int, default=0, help="privilege level to start in (0..3)")
    r.add_argument("--paging-levels", type=int, default=2,
                   help="page-table levels the MMU walks when the program enables paging (1..4)")
    r.add_argument("--tlb-size", type=int, default=64, help="TLB entries (a power of two)")
    r.add_argument("--strict", action="store_true",
                   help="make sensitive unprivileged instructions trap outside ring 0")
    r.add_argument("--count", type=int, default=10_000_000,
                   help="instruction budget (default 10 000 000)")
    r.add_argument("--define", "-D", action="append", default=[], metavar="NAME[=VALUE]",
                   help="define a name for conditional assembly (.if NAME)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument("--technique", default=None,
                   help="run the program as a guest under a technique (native, emulation, "
                        "trap_emulate, binary_translation, paravirt, hw_shadow, hw_ept; "
                        "paravirt assembles it with PARAVIRT=1)")
    r.add_argument("--cpu", default="modern", help="cost preset with --technique "
                   "(first-vtx, nehalem, modern)")
    c = sub.add_parser("compare", help="run a guest-OS workload under several techniques")
    c.add_argument("--workload", required=True, help="workload name (e.g. syscall, compute)")
    c.add_argument("--count", type=int, default=None,
                   help="operations in the measured region, after a warm-up (default: the "
                        "workload's loop count)")
    c.add_argument("--techniques", default=None,
                   help="comma-separated techniques (default: every one the CPU preset "
                        "can run)")
    c.add_argument("--cpu", default="modern", help="cost preset: first-vtx, nehalem, modern")
    c.add_argument("--no-strict", action="store_true",
                   help="run trap_emulate on the non-strict ISA (POPF & co. do not trap)")
    c.add_argument("--json", action="store_true",
                   help="print the results contract of each technique, {technique: contract}")
    w = sub.add_parser("pagewalk", help="one cold page walk, native or nested, step by step")
    w.add_argument("--guest-levels", type=int, default=4, metavar="N",
                   help="levels of the guest's page table (1..4, default 4)")
    w.add_argument("--nested-levels", type=int, default=4, metavar="M",
                   help="levels of the nested (EPT) table (1..4; 0 = no nesting, a native walk;"
                        " default 4)")
    def address(text):                      # argparse names the type in its error message
        return int(text, 0)
    w.add_argument("--address", type=address, default=None, metavar="GVA",
                   help="guest-virtual address to walk (default 0x00123abc)")
    w.add_argument("--access", choices=("read", "write", "fetch"), default="read",
                   help="kind of access (default read)")
    w.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser("warmup", help="compile the jitted kernels into the on-disk cache")
    sub.add_parser("lab", help="open the course in JupyterLab", add_help=False)
    sub.add_parser("isa", help="print the ISA reference (Markdown)")
    return p


def cmd_run(args) -> int:
    from .asm import AsmError, parse_defines
    from .runner import run_source
    from .tools import status
    from .tools.compare import report_run
    if args.technique:
        from .tools.compare import cmd_run_technique
        return cmd_run_technique(args)
    try:
        with open(args.file, encoding="utf-8") as f:
            source = f.read()
    except OSError as exc:
        return status.fail(status.BAD_INPUT, f"{args.file}: cannot read: {exc.strerror}", "")
    try:
        defines = parse_defines(args.define)
    except ValueError:
        return status.fail(status.BAD_INPUT,
                           f"--define: expected NAME or NAME=NUMBER, got {args.define}", "")
    try:
        result = run_source(source, filename=args.file, count=args.count, ring=args.ring,
                            paging_levels=args.paging_levels, tlb_size=args.tlb_size,
                            strict=args.strict, defines=defines)
    except AsmError as exc:
        return status.fail(status.BAD_INPUT, str(exc), "")
    except (ValueError, TypeError) as exc:
        return status.fail(status.BAD_INPUT, str(exc))
    return report_run(result, args)


def cmd_pagewalk(args) -> int:
    """The ``pagewalk`` command: print the walk (``--json``: one JSON object)."""
    from .lessons.pagewalk import DEFAULT_GVA, pagewalk
    from .tools import status
    try:
        gva = DEFAULT_GVA if args.address is None else args.address
        result = pagewalk(args.guest_levels, args.nested_levels, gva, args.access)
    except (ValueError, TypeError) as exc:
        return status.fail(status.BAD_INPUT, str(exc), "kernel_sim pagewalk: ")
    print(json.dumps(result.as_dict(), sort_keys=True) if args.json else result.text())
    return status.OK


def warmup(verbose: bool = True) -> float:
    """Compile (or load from the cache) every jitted kernel; return the seconds it took."""
    from .tools.warm import warm_all
    t0 = time.perf_counter()
    if verbose:
        print("kernel_sim: compiling the simulator's CPU and MMU kernels "
              "(first time about 10-30 s; later starts load them from the cache) ...",
              flush=True)
    warm_all()
    dt = time.perf_counter() - t0
    if verbose:
        print(f"kernel_sim: kernels ready in {dt:.1f} s", flush=True)
    return dt


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from .tools.lab import main_lab
        return main_lab(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "warmup":
        warmup()
        return 0
    if args.command == "compare":
        from .tools.compare import cmd_compare
        return cmd_compare(args)
    if args.command == "pagewalk":
        return cmd_pagewalk(args)
    if args.command == "isa":
        from .tools.isa_reference import isa_reference_markdown
        print(isa_reference_markdown())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
