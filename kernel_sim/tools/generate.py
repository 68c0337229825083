"""Write the files that are generated from the tables, or check that they are up to date.

::

    python -m kernel_sim.tools.generate            # write every generated file that changed
    python -m kernel_sim.tools.generate --check    # change nothing; exit 1 naming stale files

Generated files (never edit them by hand: edit the table and run this):

===============================  ================================================================
file                             generated from
===============================  ================================================================
``kernel_sim/guests/abi.s``      :func:`kernel_sim.abi.assembly_include` -- the guest ABI's
                                 constants for the kernel and the user programs
``kernel_sim/guests/machine.s``  :func:`kernel_sim.isa.assembly_include` -- the machine's
                                 architectural constants (pages, PTE bits, vectors)
``course/isa_reference.md``      :func:`kernel_sim.tools.isa_reference.isa_reference_markdown`
                                 (only in a source checkout, where ``course/`` exists)
===============================  ================================================================
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict

PACKAGE = Path(__file__).resolve().parent.parent
ABI_INCLUDE = PACKAGE / "guests" / "abi.s"
MACHINE_INCLUDE = PACKAGE / "guests" / "machine.s"
ISA_REFERENCE = PACKAGE.parent / "course" / "isa_reference.md"


def generated_files() -> Dict[Path, Callable[[], str]]:
    """Every generated file -> the function that makes its text."""
    from .. import abi, isa
    from .isa_reference import isa_reference_markdown

    files: Dict[Path, Callable[[], str]] = {ABI_INCLUDE: abi.assembly_include,
                                            MACHINE_INCLUDE: isa.assembly_include}
    if ISA_REFERENCE.parent.is_dir():
        files[ISA_REFERENCE] = lambda: isa_reference_markdown().rstrip("\n") + "\n"
    return files


def stale_files() -> list:
    """The generated files whose committed text differs from what the tables give."""
    return [path for path, make in generated_files().items()
            if not path.is_file() or path.read_text(encoding="utf-8") != make()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernel_sim.tools.generate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    stale = stale_files()
    for path in stale:
        shown = path.relative_to(PACKAGE.parent)
        if args.check:
            print(f"stale: {shown} (run python -m kernel_sim.tools.generate)", file=sys.stderr)
        else:
            path.write_text(generated_files()[path](), encoding="utf-8")
            print(f"wrote {shown}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
