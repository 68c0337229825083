"""Virtual-machine monitors: one module per technique, all with the same shape.

=====================  ==========================================================================
technique              what the monitor does
=====================  ==========================================================================
``native``             nothing: the guest owns the machine (the baseline)
``emulation``          interprets every guest instruction in software, with a soft MMU; Bochs-style
                       interpretation or QEMU-style translation blocks
``trap_emulate``       runs the guest kernel in ring 1; privileged instructions trap and are
                       emulated; shadow page tables
``binary_translation`` translates guest kernel code into a translation cache; sensitive
                       instructions become callouts; user code runs directly; shadow page tables
``paravirt``           runs a modified (``PARAVIRT=1``) kernel in ring 1 that calls the hypervisor
                       (hypercalls) and updates its page tables through it (direct paging)
``hw_shadow``          VT-x without EPT: the unmodified kernel runs in ring 0 of VMX non-root
                       mode; the VMCS makes page faults, CR3 loads and INVLPG exit (shadow paging)
``hw_ept``             VT-x with EPT: the CPU walks the guest's tables through the monitor's
                       nested table; only EPT violations, I/O, HLT and interrupts exit
=====================  ==========================================================================

Use :func:`run_technique` (or the ``compare`` command of the CLI)::

    from kernel_sim.guest import build_guest
    from kernel_sim.monitors import run_technique
    result = run_technique(build_guest("syscall", count=100), "trap_emulate", strict=True)
    print(result.exit_table())

See :mod:`kernel_sim.monitors.base` for what every technique shares (host memory layout, the
guest's view, event counting and cycle categories).
"""
from __future__ import annotations

import difflib
import importlib
from typing import Dict, List

from .base import DEFAULT_BUDGET, Monitor, MonitorError, Needs, ProgramImage  # noqa: F401

#: technique name -> "module:Class" (imported on first use: a notebook pays only for what it uses)
_REGISTRY: Dict[str, str] = {
    "native": "native:Native",
    "emulation": "emulation:Emulation",
    "trap_emulate": "trap_emulate:TrapEmulate",
    "binary_translation": "binary_translation:BinaryTranslation",
    "paravirt": "paravirt:Paravirt",
    "hw_shadow": "hardware_assist:HwShadow",
    "hw_ept": "hardware_assist:HwEpt",
}
#: The order techniques appear in tables and menus.
TECHNIQUE_ORDER = ("native", "emulation", "trap_emulate", "binary_translation", "paravirt",
                   "hw_shadow", "hw_ept")


def available_techniques() -> List[str]:
    """Techniques whose module is present in this version of the package."""
    out = []
    for name in TECHNIQUE_ORDER:
        module = _REGISTRY[name].split(":")[0]
        if importlib.util.find_spec(f"{__name__}.{module}") is not None:
            out.append(name)
    return out


def monitor_class(technique: str):
    """The :class:`Monitor` subclass of a technique (clear error for unknown names)."""
    if technique not in _REGISTRY or technique not in available_techniques():
        known = available_techniques()
        close = difflib.get_close_matches(str(technique), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown technique {technique!r}{hint}; available: {', '.join(known)}")
    module, cls = _REGISTRY[technique].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def techniques_for(cpu: str = "modern") -> List[str]:
    """The available techniques a CPU preset can run (first-vtx: no EPT, so no hw_ept), in
    :data:`TECHNIQUE_ORDER`; each technique's class decides (:meth:`Monitor.refusal`)."""
    return [name for name in available_techniques() if monitor_class(name).refusal(cpu) is None]


def run_technique(image, technique: str, count: int = DEFAULT_BUDGET, **settings):
    """Run ``image`` under ``technique``; ``settings`` go to the monitor (cpu, strict, knobs)."""
    return monitor_class(technique)(image, **settings).run(count)
