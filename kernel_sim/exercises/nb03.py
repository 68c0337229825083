"""Exercises of notebook 03 (Popek and Goldberg).  Expected values come from the ISA table and
from running the simulator, never from a list typed in here.

* 03.1 -- which instructions of the toy ISA are sensitive but unprivileged?  (the ISA table)
* 03.2 -- control-sensitive, behaviour-sensitive or not sensitive, for six instructions?
  (the ISA table)
* 03.3 -- for each small kernel of :data:`kernel_sim.lessons.popek_goldberg.SMALL_KERNELS`: does
  trap-and-emulate on the non-strict ISA leave exactly the native state?  (run by the checker)
* 03.4 -- how many ``emulate:popf`` events does one iteration of the ``io`` workload cost on
  the strict ISA?  (two runs at different loop counts, by the checker)
"""
from __future__ import annotations

from .. import isa
from . import exercise

#: The instructions of exercise 03.2.
KINDS_CANDIDATES = ("ADD", "CLI", "POPF", "PUSHF", "GETCPL", "JMP")
KIND_NAMES = ("control", "behaviour", "none")


def _mnemonic_set(answer) -> set:
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        raise TypeError("expected a set or list of mnemonics, e.g. {'CLI', 'HLT'}")
    return {str(m).strip().upper() for m in answer}


def _as_dict(answer, keys, what: str) -> dict:
    if not isinstance(answer, dict):
        raise TypeError(f"expected a dict {{name: {what}}}, got {type(answer).__name__}")
    given = {str(k).strip(): v for k, v in answer.items()}
    lower = {k.lower(): k for k in keys}
    out = {}
    for k, v in given.items():
        name = lower.get(k.lower())
        if name is None:
            raise ValueError(f"{k!r} is not one of {', '.join(keys)}")
        out[name] = v
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f"missing: {', '.join(missing)}")
    return out


@exercise("03.1", "The sensitive, unprivileged instructions of the toy ISA",
          hints=["Look for the rows of the class table whose class is 'sensitive, "
                 "unprivileged', or call theorem1(strict=False).",
                 "Sensitive means control- or behaviour-sensitive; the ones that do not trap "
                 "outside ring 0 on the default ISA are the answer. SYSCALL traps by design."])
def _check_violations(answer):
    given = _mnemonic_set(answer)
    unknown = sorted(given - set(isa.BY_MNEMONIC))
    if unknown:
        return False, f"not instructions of the toy ISA: {', '.join(unknown)}"
    expected = set(isa.popek_goldberg_violations(strict=False))
    if given != expected:
        missing, extra = expected - given, given - expected
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing")
        if extra:
            parts.append(f"{len(extra)} that trap outside ring 0 or are not sensitive")
        return False, "; ".join(parts) + " (checked against the ISA table)"
    return True, (f"{', '.join(sorted(expected))}: sensitive, yet they do not trap outside "
                  f"ring 0 on the default ISA (the ISA table agrees)")


@exercise("03.2", "Control-sensitive, behaviour-sensitive or not sensitive?",
          hints=["Control-sensitive: it can change the machine's control state. Behaviour-"
                 "sensitive: what it does or returns depends on that state.",
                 "The class table's 'sensitivity' column has the answer; an innocuous "
                 "instruction is 'none'."])
def _check_kinds(answer):
    given = _as_dict(answer, KINDS_CANDIDATES, "'control', 'behaviour' or 'none'")
    for name, kind in given.items():
        if not isinstance(kind, str) or kind.strip().lower() not in KIND_NAMES:
            return False, f"{name}: the kind must be one of {', '.join(KIND_NAMES)}, got {kind!r}"
    expected = {m: isa.BY_MNEMONIC[m].sensitivity or "none" for m in KINDS_CANDIDATES}
    wrong = sorted(m for m in KINDS_CANDIDATES if given[m].strip().lower() != expected[m])
    if wrong:
        return False, (f"{len(wrong)} of {len(KINDS_CANDIDATES)} wrong (checked against the "
                       f"ISA table)")
    return True, "all six kinds agree with the ISA table"


@exercise("03.3", "Which small kernels survive trap-and-emulate without a strict ISA?",
          hints=["Run compare_isas(small_kernel_image(name)) and look at equivalent(strict="
                 "False) -- or reason first: which sensitive instructions does each kernel run, "
                 "and does the value it gets (or the state it leaves) differ in ring 1?",
                 "A sensitive instruction that runs unemulated is a violation, but it only "
                 "shows when the value it sees differs: with interrupts on, the host's IF "
                 "and the guest's virtual IF are both 1."])
def _check_small(answer):
    from ..lessons.popek_goldberg import SMALL_KERNELS, equivalent_without_strict
    given = _as_dict(answer, tuple(SMALL_KERNELS), "True or False")
    for name, value in given.items():
        if not isinstance(value, bool):
            return False, f"{name}: answer True or False, got {value!r}"
    expected = {name: equivalent_without_strict(name) for name in SMALL_KERNELS}
    wrong = sorted(n for n in SMALL_KERNELS if given[n] != expected[n])
    if wrong:
        return False, (f"{len(wrong)} of {len(SMALL_KERNELS)} predictions wrong (checked by "
                       f"running each kernel natively and under trap_emulate)")
    return True, ("all four predictions match the runs: equivalence breaks only where a "
                  "sensitive instruction saw or left a different value")


@exercise("03.4", "emulate:popf events per iteration of the io workload (strict ISA)",
          hints=["events_per_operation('io', strict=True) runs the workload at two loop "
                 "counts and divides the difference.",
                 "One blkread goes through the system-call path and the block driver: count "
                 "the irq_save/irq_restore pairs on the way."])
def _check_popf(answer):
    from ..lessons.popek_goldberg import events_per_operation
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return False, f"expected a number, got {type(answer).__name__} {answer!r}"
    expected = events_per_operation("io", strict=True).get("emulate:popf", 0)
    if answer != expected:
        return False, f"{answer} is not what one more blkread adds (measured at two counts)"
    return True, (f"each blkread costs {expected} emulate:popf exit(s) on the strict ISA: "
                  f"correctness has a price in monitor exits (measured at two loop counts)")
