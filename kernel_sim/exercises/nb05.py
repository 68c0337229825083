"""Exercises of notebook 05 (full virtualization without hardware support).

Expected values come from the simulator: the checkers run the guest OS under the monitor and
take the difference of two loop counts (:func:`kernel_sim.lessons.translation.per_operation`), so
boot and shutdown cancel out and what is left is one iteration of the workload's loop, rounded
to whole events (timer interrupts add fractions).

* 05.1 -- how many times does one getpid system call enter the trap_emulate monitor (strict
  ISA): emulated instructions plus reflected traps?
* 05.2 -- per iteration of ``pgfault``: how many hidden and how many true shadow page faults?
* 05.3 -- per iteration of ``ctxswitch`` with a single cached shadow (``max_roots=1``): how
  many shadow roots are built and how many hidden faults follow?
* 05.4 -- how many callouts does the binary translator make per iteration of ``callret``?
"""
from __future__ import annotations

from . import exercise


def _as_int(answer, what: str = "a whole number"):
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"expected {what}, got {type(answer).__name__} {answer!r}")
    return answer


def _per_op(workload: str, technique: str, strict=None, **settings):
    """Events per iteration, rounded to whole events.

    A timer interrupt arrives every so many iterations, so a few reasons come out as a
    fraction (0.05 IRET per getpid call); rounding keeps what every iteration does.
    """
    from ..lessons.translation import per_operation
    return {k: round(v) for k, v in per_operation(workload, technique, strict,
                                                 **settings).items() if round(v)}


@exercise("05.1", "Monitor entries per getpid system call (strict ISA)",
          hints=["per_operation('syscall') lists the events of one getpid call: add up the "
                 "emulate:<mnemonic> and reflect:<vector> entries.",
                 "Every emulated instruction is a trap into the monitor, and so is the system "
                 "call itself, which the monitor then reflects into the guest kernel."])
def _check_syscall_entries(answer):
    per = _per_op("syscall", "trap_emulate", strict=True)
    emulated = {k: v for k, v in per.items() if k.startswith("emulate:")}
    reflected = {k: v for k, v in per.items() if k.startswith("reflect:")}
    expected = sum(emulated.values()) + sum(reflected.values())
    if _as_int(answer) != expected:
        if answer == sum(emulated.values()):
            return False, (f"{answer} counts the emulated instructions; the system call itself "
                           f"also enters the monitor first")
        return False, f"{answer} is not the number of times one getpid call enters the monitor"
    listing = ", ".join(f"{k.split(':')[1].upper()} x{v}" for k, v in sorted(emulated.items()))
    return True, (f"one getpid call enters the monitor {expected} times: {len(reflected)} "
                  f"reflected system call and {sum(emulated.values())} emulated instructions "
                  f"({listing}) (counted by running it)")


def _pair(answer, what: str):
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__len__") or len(answer) != 2:
        raise TypeError(f"expected a pair {what}, e.g. (3, 4)")
    return tuple(_as_int(a) for a in answer)


@exercise("05.2", "Hidden and true shadow page faults per pgfault iteration",
          hints=["per_operation('pgfault') has shadow:hidden_fault and shadow:true_fault.",
                 "The guest's first touch of the fresh page is the guest's own fault; after the "
                 "guest kernel maps it, the load and the first store each need a shadow entry."])
def _check_pgfault(answer):
    hidden, true = _pair(answer, "(hidden faults, true faults)")
    per = _per_op("pgfault", "trap_emulate")
    want = (per.get("shadow:hidden_fault", 0), per.get("shadow:true_fault", 0))
    if (hidden, true) == (want[1], want[0]) and want[0] != want[1]:
        return False, "the two numbers are the wrong way round: (hidden, true)"
    if (hidden, true) != want:
        wrong = [name for name, a, b in (("hidden", hidden, want[0]), ("true", true, want[1]))
                 if a != b]
        return False, f"the number of {' and '.join(wrong)} faults per iteration is not right"
    return True, (f"{want[0]} hidden and {want[1]} true fault(s) per iteration: only the "
                  f"true one reaches the guest kernel (counted by running pgfault twice)")


@exercise("05.3", "Context switches with a single cached shadow",
          hints=["Run per_operation('ctxswitch', max_roots=1) and compare it with "
                 "per_operation('ctxswitch').",
                 "With one cached shadow, every switch to the other process throws the last "
                 "shadow away: a new root, and every page touched after it faults again."])
def _check_roots(answer):
    new, hidden = _pair(answer, "(new shadow roots, hidden faults)")
    per = _per_op("ctxswitch", "trap_emulate", max_roots=1)
    want = (per.get("shadow:root_new", 0), per.get("shadow:hidden_fault", 0))
    if (new, hidden) != want:
        wrong = [name for name, a, b in (("new roots", new, want[0]),
                                         ("hidden faults", hidden, want[1])) if a != b]
        return False, f"the number of {' and '.join(wrong)} per iteration is not right"
    cached = _per_op("ctxswitch", "trap_emulate")
    return True, (f"{want[0]} new roots and {want[1]} hidden faults per iteration with one "
                  f"cached shadow, against {cached.get('shadow:root_new', 0)} and "
                  f"{cached.get('shadow:hidden_fault', 0)} when both address spaces stay "
                  f"cached (counted by running ctxswitch)")


@exercise("05.4", "Callouts per callret iteration under binary translation",
          hints=["per_operation('callret', 'binary_translation') lists the callout:<kind> "
                 "events per iteration.",
                 "One iteration is one CALL and one RET inside the guest kernel; the translator "
                 "turns each into a callout (the return address must be the guest's)."])
def _check_callret(answer):
    per = _per_op("callret", "binary_translation")
    got = {k: v for k, v in per.items() if k.startswith("callout:")}
    expected = sum(got.values())
    if _as_int(answer) != expected:
        return False, f"{answer} is not the number of callouts per call/return pair"
    listing = ", ".join(f"{k} x{v}" for k, v in sorted(got.items()))
    return True, (f"{expected} callouts per iteration ({listing}), where trap-and-emulate "
                  f"needs none (counted by running callret twice)")
