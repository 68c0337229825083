"""Exercise checks for learners: ``check("02.1", answer)``.

How it works
------------
Each notebook's exercises live in a module ``kernel_sim/exercises/nbNN.py`` that registers a
checker per exercise id with :func:`exercise`.  A checker receives the learner's answer and
returns ``(ok, message)``; it should say *what* it checked.  :func:`check` looks the id up (ids,
not notebook metadata, so a copied or renamed notebook still works), runs the checker, and prints
a verdict:

* right: ``02.1: public checks passed -- <what was checked>``.  We never say "all tests
  passed": an instructor's hidden tests may check more.
* wrong: ``02.1: not yet -- <why>``, then a hint.  Each further wrong attempt reveals the next
  hint, if there is one.

Checkers compute expected values from the simulator itself where they can (run the program,
count the traps), so the answer key cannot drift from the machine.

:func:`verdict` judges an answer the same way but quietly: no hint, no attempt counted.  The
hidden (autograded) tests of the exercise masters in ``course/masters/`` use it, e.g.
``assert verdict("02.1", answer).ok``, so grading a notebook never changes the hints a learner
sees next.
"""
from __future__ import annotations

import difflib
import html
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Tuple

Checker = Callable[[Any], Tuple[bool, str]]


@dataclass
class Exercise:
    id: str
    title: str
    checker: Checker
    hints: List[str] = field(default_factory=list)
    attempts: int = 0


@dataclass
class Verdict:
    """What :func:`check` returns: ``ok`` plus the message shown to the learner."""

    exercise_id: str
    ok: bool
    message: str
    hint: str = ""

    def text(self) -> str:
        mark = "✅" if self.ok else "❌"
        head = "public checks passed" if self.ok else "not yet"
        out = f"{mark} {self.exercise_id}: {head} -- {self.message}"
        if self.hint:
            out += f"\n   hint: {self.hint}"
        return out

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        colour = "#009E73" if self.ok else "#D55E00"
        mark = "✅" if self.ok else "❌"
        head = "public checks passed" if self.ok else "not yet"
        hint = (f"<br><i>hint:</i> {html.escape(self.hint)}" if self.hint else "")
        return (f"<div style='border-left:4px solid {colour};padding:4px 8px'>{mark} "
                f"<b>{html.escape(self.exercise_id)}</b>: {head} -- "
                f"{html.escape(self.message)}{hint}</div>")


_REGISTRY: Dict[str, Exercise] = {}
_LOADED = False


def exercise(exercise_id: str, title: str, hints: List[str] = ()):
    """Decorator registering ``func(answer) -> (ok, message)`` as the checker of an exercise."""
    def register(func: Checker) -> Checker:
        if exercise_id in _REGISTRY:
            raise ValueError(f"exercise {exercise_id!r} registered twice")
        _REGISTRY[exercise_id] = Exercise(exercise_id, title, func, list(hints))
        return func
    return register


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True


def exercises() -> Dict[str, str]:
    """All exercise ids with their titles."""
    _load_all()
    return {k: v.title for k, v in sorted(_REGISTRY.items())}


def _lookup(exercise_id: Any):
    """The registered exercise, or the Verdict explaining that there is none."""
    _load_all()
    if not isinstance(exercise_id, str) or exercise_id not in _REGISTRY:
        near = difflib.get_close_matches(str(exercise_id), list(_REGISTRY), n=1)
        extra = f"; did you mean {near[0]!r}?" if near else ""
        message = f"there is no exercise {exercise_id!r}{extra}"
        return None, Verdict(str(exercise_id), False, message)
    return _REGISTRY[exercise_id], None


def _judge(ex: Exercise, answer: Any) -> Tuple[bool, str]:
    """Run the checker of ``ex`` on ``answer``; never raises."""
    try:
        ok, message = ex.checker(answer)
    except Exception as exc:  # a learner's odd answer must never crash the notebook
        ok, message = False, f"could not check this answer ({type(exc).__name__}: {exc})"
    return bool(ok), message


def verdict(exercise_id: str, answer: Any = None) -> Verdict:
    """Judge ``answer`` like :func:`check`, but without side effects.

    The verdict carries no hint and the attempt is not counted, so the next :func:`check` shows
    the same hint it would have shown anyway.  Hidden tests use it::

        assert verdict("02.1", answer).ok, verdict("02.1", answer).message
    """
    ex, missing = _lookup(exercise_id)
    if missing is not None:
        return missing
    if answer is None or answer is Ellipsis:
        return Verdict(exercise_id, False, "no answer yet: replace the ... with your answer")
    ok, message = _judge(ex, answer)
    return Verdict(exercise_id, ok, message)


def check(exercise_id: str, answer: Any = None) -> Verdict:
    """Check a learner's answer to exercise ``exercise_id`` (e.g. ``"02.1"``).

    Returns a :class:`Verdict`, shown when it is the last line of a cell.  A wrong answer comes
    with a hint; each further wrong attempt reveals the next hint, if there is one.
    """
    ex, missing = _lookup(exercise_id)
    if missing is not None:
        return missing
    if answer is None or answer is Ellipsis:
        return Verdict(exercise_id, False, "no answer yet: replace the ... with your answer",
                       ex.hints[0] if ex.hints else "")
    ok, message = _judge(ex, answer)
    hint = ""
    if not ok:
        if ex.hints:
            hint = ex.hints[min(ex.attempts, len(ex.hints) - 1)]
        ex.attempts += 1
    return Verdict(exercise_id, ok, message, hint)


__all__ = ["check", "exercise", "exercises", "verdict", "Verdict"]
