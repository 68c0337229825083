"""Exit statuses of the command line: one table shared by every command.

``run``, ``run --technique``, ``compare``, ``pagewalk`` (and the experiment commands to come:
``io``, ``containers``, ``models``) end with one of these statuses, so a script or a grader can
tell what happened without reading the text:

====  ============  ===========================================================================
code  name          meaning
====  ============  ===========================================================================
0     OK            the guest halted normally (``pagewalk``: the walk was printed, fault or not)
2     BAD_INPUT     bad input: malformed assembly (``FILE:LINE:COL: message``), a file that
                    cannot be read, a bad number, an unknown name (workload, technique, CPU
                    preset); argparse's own usage errors exit 2 as well
3     TRAPPED       the guest stopped abnormally: an unhandled trap or a triple fault
4     BUDGET        the instruction budget ran out before the guest halted (the message names
                    ``--count``)
5     REFUSED       a monitor refused: a combination it cannot run (``hw_ept`` on
                    ``first-vtx``) or a guest it cannot continue
====  ============  ===========================================================================

Status 1 is left to Python itself (an uncaught exception: a bug in kernel_sim, please report
it).  With ``--json`` the output is printed whatever the status; the message goes to stderr.
"""
from __future__ import annotations

import sys
from typing import Iterable

OK = 0
BAD_INPUT = 2
TRAPPED = 3
BUDGET = 4
REFUSED = 5

#: (code, name, meaning) of every status, in order: the CLI's help and the README print these.
STATUSES = (
    (OK, "OK", "the guest halted normally"),
    (BAD_INPUT, "BAD_INPUT", "bad input: malformed assembly, unreadable file, bad number, "
                             "unknown name"),
    (TRAPPED, "TRAPPED", "the guest stopped on an unhandled trap or a triple fault"),
    (BUDGET, "BUDGET", "the instruction budget ran out (see --count)"),
    (REFUSED, "REFUSED", "a monitor refused the combination (or could not continue the guest)"),
)


def help_text() -> str:
    """The table as the CLI's ``--help`` epilog prints it."""
    return "exit status:\n" + "\n".join(f"  {code}  {meaning}" for code, _, meaning in STATUSES)


def status_of_stop(stop: str) -> int:
    """The exit status of a run that ended with ``stop`` (a ``state.STOP_NAMES`` value)."""
    if stop == "halt":
        return OK
    if stop == "budget":
        return BUDGET
    return TRAPPED


def worst(statuses: Iterable[int]) -> int:
    """The status of several runs: the first non-zero one in the order of :data:`STATUSES`
    from the most serious (a refusal) down (OK when all halted)."""
    found = set(statuses)
    for code in (REFUSED, BAD_INPUT, TRAPPED, BUDGET):
        if code in found:
            return code
    return OK


def fail(code: int, message: str, prefix: str = "kernel_sim: ") -> int:
    """Print ``prefix + message`` on stderr and return ``code`` (assembly errors pass
    ``prefix=""``: they start with ``FILE:LINE:COL``)."""
    print(prefix + message, file=sys.stderr)
    return code
