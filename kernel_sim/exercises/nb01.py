"""Exercises of notebook 01 (history and kinds of virtualization).

The answer keys are computed from :mod:`kernel_sim.lessons.history`, so they follow the timeline data.
The quizzes a notebook shows (:data:`ORDER_QUIZ`, :data:`ROLES_QUIZ`, :data:`KVM_TYPE_QUIZ`,
:data:`KINDS_QUIZ`) live here too, next to their checkers.
"""
from __future__ import annotations

import re

from ..lessons import history
from . import exercise

# --------------------------------------------------------------------------------------------
# 01.1 -- put events in chronological order
# --------------------------------------------------------------------------------------------
#: Event keys the learner orders (deliberately shuffled; all have checked dates in different
#: years, so exactly one order is right).
ORDER_QUIZ = ("kvm", "cp67", "xen", "popek_goldberg", "vmware", "qumranet")


def order_quiz() -> dict[str, str]:
    """The events of exercise 01.1 as ``{key: name}``, in quiz (not date) order."""
    return {k: history.event(k).name for k in ORDER_QUIZ}


def _event_key(item) -> str:
    text = str(item).strip().lower()
    for e in history.EVENTS:
        if text in (e.key, e.name.lower(), e.short.lower()):
            return e.key
    raise KeyError(item)


@exercise("01.1", "Order events of the history chronologically", hints=[
    "Give a list of the six keys of order_quiz(), oldest first, e.g. ['cp67', ...].",
    "Mainframes came first; the formal theory came in the 1970s; x86 virtualization in the "
    "1990s-2000s. Hover over the timeline markers for exact dates.",
    "The IBM systems are from the 1960s, Popek & Goldberg from 1974; VMware Workstation (1999) "
    "is older than Xen (2003); KVM's merge (2007) comes before Red Hat bought Qumranet (2008).",
])
def _check_order(answer):
    if isinstance(answer, (str, bytes)) or not hasattr(answer, "__iter__"):
        return False, "the answer should be a list of event keys, e.g. ['cp67', 'xen', ...]"
    items = list(answer)
    try:
        keys = [_event_key(x) for x in items]
    except KeyError as exc:
        return False, f"{exc.args[0]!r} is not one of the events: use keys from order_quiz()"
    if sorted(keys) != sorted(ORDER_QUIZ):
        missing = sorted(set(ORDER_QUIZ) - set(keys))
        extra = sorted(set(keys) - set(ORDER_QUIZ))
        dup = len(keys) != len(set(keys))
        parts = ([f"missing {missing}"] if missing else []) + \
                ([f"not in this quiz {extra}"] if extra else []) + \
                (["an event appears twice"] if dup else [])
        return False, "use each of the six events exactly once: " + "; ".join(parts)
    expected = sorted(ORDER_QUIZ, key=lambda k: history.event(k).when)
    if keys != expected:
        wrong = next(i for i, (a, b) in enumerate(zip(keys, expected, strict=True)) if a != b)
        return False, (f"positions 1..{wrong} are right; position {wrong + 1} is not "
                       f"({history.event(keys[wrong]).name} is not the next oldest)")
    return True, "the six events are in date order (checked against the course timeline)"


# --------------------------------------------------------------------------------------------
# 01.2 -- who is the VMM, the guest and the host?
# --------------------------------------------------------------------------------------------
ROLES_QUIZ = {
    "A": "Windows, installed on the laptop's disk, running directly on its hardware",
    "B": "VMware Workstation's virtual machine monitor, started from Windows",
    "C": "Ubuntu Linux, installed into a virtual disk and running inside a window",
}
_ROLES_KEY = {"host": "A", "vmm": "B", "guest": "C"}
_ROLE_ALIASES = {
    "host": "host", "host os": "host", "宿主机": "host",
    "vmm": "vmm", "hypervisor": "vmm", "virtual machine monitor": "vmm", "虚拟机监视器": "vmm",
    "虚拟化平台": "vmm",
    "guest": "guest", "guest vm": "guest", "guest os": "guest", "客户机": "guest",
}


@exercise("01.2", "Name the VMM, the guest and the host", hints=[
    "Answer with a dict like {'vmm': 'A', 'guest': 'B', 'host': 'C'} (letters from ROLES_QUIZ).",
    "The host (宿主机) owns the real hardware; the guest (客户机) runs inside a virtual machine; "
    "the VMM (虚拟机监视器) sits between them and creates the virtual machine.",
])
def _check_roles(answer):
    if not isinstance(answer, dict):
        return False, ("the answer should be a dict: "
                       "{'vmm': letter, 'guest': letter, 'host': letter}")
    given = {}
    for role, letter in answer.items():
        name = _ROLE_ALIASES.get(str(role).strip().lower())
        if name is None:
            return False, (f"unknown role {role!r}: use 'vmm', 'guest' and 'host' "
                           "(or 虚拟机监视器, 客户机, 宿主机)")
        given[name] = str(letter).strip().upper()
    missing = sorted(set(_ROLES_KEY) - set(given))
    if missing:
        return False, f"give a letter for every role; missing: {', '.join(missing)}"
    bad = [r for r in ("vmm", "guest", "host") if given[r] != _ROLES_KEY[r]]
    if bad:
        return False, f"not right yet for: {', '.join(bad)}"
    return True, "VMM, guest and host are matched to the right parts of the setup"


# --------------------------------------------------------------------------------------------
# 01.3 -- is KVM type 1 or type 2?
# --------------------------------------------------------------------------------------------
KVM_TYPE_QUIZ = {
    "a": "type 1: KVM is a bare-metal hypervisor",
    "b": "type 2: KVM is a hosted hypervisor",
    "c": "it is debated: as a module of a host OS it fits the host model (type 2), but Linux "
         "with KVM owns the hardware and schedules the VMs itself, so it can also be counted "
         "as type 1",
}


@exercise("01.3", "Is KVM a type 1 or a type 2 hypervisor?", hints=[
    "Answer with a letter from KVM_TYPE_QUIZ (or a sentence of your own).",
    "Read the seed's host-model section to its end: what does it say Linux is starting to "
    "look like?",
])
def _check_kvm_type(answer):
    text = str(answer).strip().lower()
    if text in ("c", "(c)", "c)"):
        return True, "you named the debate: both readings are argued, and the seed gives both"
    mentions_1 = bool(re.search(r"type[- ]?(1|one|i)\b", text))
    mentions_2 = bool(re.search(r"type[- ]?(2|two|ii)\b", text))
    debate = any(w in text for w in ("debate", "depends", "both", "argu", "争", "either",
                                     "contested", "disputed"))
    if debate or (mentions_1 and mentions_2):
        return True, "you named the debate: both readings are argued, and the seed gives both"
    if text in ("a", "b") or mentions_1 or mentions_2:
        return False, ("that is one side of a real debate: the seed files KVM under the host "
                       "model (type 2) and then says KVM 'can also count as' the hypervisor "
                       "model (type 1)")
    return False, "answer with a, b or c from KVM_TYPE_QUIZ"


# --------------------------------------------------------------------------------------------
# 01.4 -- which kind of virtualization is this?
# --------------------------------------------------------------------------------------------
KINDS_QUIZ = {
    1: "Linux LVM builds one 2 TB logical volume out of two 1 TB disks",
    2: "one physical switch carries three separate VLANs",
    3: "Intel VT-x lets an unmodified guest kernel run in ring 0 of VMX non-root operation",
    4: "a laptop runs Windows and Linux side by side, each in its own virtual machine",
}
_KINDS_KEY = {1: "storage", 2: "network", 3: "hardware", 4: "system"}


@exercise("01.4", "Which kind of virtualization is each example?", hints=[
    "Answer with a dict {1: kind, 2: kind, 3: kind, 4: kind}; kinds: system, storage, network, "
    "gpu, software, hardware (or their Chinese names).",
    "Ask what is being virtualized: disks, networks, the whole computer, or a CPU feature "
    "that helps the VMM?",
])
def _check_kinds(answer):
    if not isinstance(answer, dict):
        return False, "the answer should be a dict {1: 'storage', ...}"
    given = {}
    for number, name in answer.items():
        try:
            n = int(number)
        except (TypeError, ValueError):
            return False, f"{number!r} is not an example number (1-4)"
        try:
            given[n] = history.kind(name).key
        except KeyError:
            known = ", ".join(k.key for k in history.KINDS)
            return False, f"{name!r} is not a kind from the list ({known})"
    missing = sorted(set(_KINDS_KEY) - set(given))
    if missing:
        return False, f"give a kind for every example; missing: {missing}"
    bad = [n for n in sorted(_KINDS_KEY) if given[n] != _KINDS_KEY[n]]
    if bad:
        return False, f"examples {bad} are not right yet"
    return True, "all four examples are matched to their kind of virtualization"


__all__ = ["ORDER_QUIZ", "order_quiz", "ROLES_QUIZ", "KVM_TYPE_QUIZ", "KINDS_QUIZ"]
