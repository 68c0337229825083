"""Exercises of notebook 02 (protection rings).  Expected values come from the simulator.

* 02.1 -- how many #GP faults does "privileged mix" raise in ring 3?  (run by the checker)
* 02.2 -- which instructions of a list are privileged?  (read from the ISA table)
* 02.3 -- which ring number does GETCPL report to a program in ring 1?  (run by the checker)
* 02.4 -- how many instructions does the kernel run for the "write" system call of
  "system calls"?  (single-stepped by the checker)
"""
from __future__ import annotations

from .. import isa
from . import exercise

#: The candidates of exercise 02.2.
CANDIDATES = ("ADD", "CLI", "LD", "OUT", "PUSHF", "HLT", "SYSCALL", "WRCR", "GETCPL", "JMP")


def _as_int(answer):
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"expected a whole number, got {type(answer).__name__} {answer!r}")
    return answer


@exercise("02.1", "#GP faults of 'privileged mix' in ring 3",
          hints=["Run probe('privileged mix', ring=3) and look at .traps.",
                 "Count only #GP, not the system call that ends the program."])
def _check_gp(answer):
    from ..lessons.rings import probe
    expected = probe("privileged mix", 3).traps["#GP"]
    if _as_int(answer) != expected:
        return False, f"{answer} is not the number of #GP the probe kernel saw in ring 3"
    return True, f"'privileged mix' raises {expected} #GP in ring 3 (counted by running it)"


@exercise("02.2", "Which of the candidate instructions are privileged?",
          hints=["kernel_sim.isa.BY_MNEMONIC['CLI'].cls tells an instruction's class.",
                 "PUSHF and GETCPL are sensitive, but are they privileged? SYSCALL is 'trapping'."])
def _check_privileged(answer):
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        return False, "expected a list or set of mnemonics, e.g. {'CLI', 'HLT'}"
    given = {str(m).strip().upper() for m in answer}
    unknown = given - set(CANDIDATES)
    if unknown:
        return False, f"not among the candidates: {', '.join(sorted(unknown))}"
    expected = {m for m in CANDIDATES if isa.BY_MNEMONIC[m].privileged}
    if given != expected:
        missing, extra = expected - given, given - expected
        parts = []
        if missing:
            parts.append(f"{len(missing)} privileged instruction(s) missing")
        if extra:
            parts.append(f"{len(extra)} that are not privileged")
        return False, "; ".join(parts) + " (checked against the ISA table)"
    return True, f"{', '.join(sorted(expected))} are the privileged ones (the ISA table agrees)"


@exercise("02.3", "What does GETCPL report in ring 1?",
          hints=["Run probe('sensitive but unprivileged', ring=1) and read its console.",
                 "Without strict mode GETCPL does not trap: it tells the truth."])
def _check_getcpl(answer):
    from ..lessons.rings import probe
    expected = int(probe("sensitive but unprivileged", 1).console.strip())
    if _as_int(answer) != expected:
        return False, f"{answer} is not what the program printed in ring 1"
    return True, (f"GETCPL reports {expected}: a kernel moved to ring 1 can see it is not in "
                  f"ring 0, and nothing trapped (checked by running the program)")


@exercise("02.4", "Kernel instructions for one write system call",
          hints=["syscall_path() returns an object with a kernel_instructions field.",
                 "Count the instructions executed in ring 0, from the first handler instruction "
                 "to SYSRET inclusive."])
def _check_path(answer):
    from ..lessons.rings import syscall_path
    expected = syscall_path().kernel_instructions
    if _as_int(answer) != expected:
        return False, f"{answer} is not the number of ring-0 instructions of the call"
    return True, f"the write call runs {expected} instructions in ring 0 (single-stepped)"
