"""Exercises of notebook 06 (paravirtualization).  Expected values come from the simulator.

* 06.1 -- in which ring does the paravirtualized guest kernel run (32-bit Xen, and the
  simulator)?  (read from a run: the CPU's ring while the PV kernel boots)
* 06.2 -- which hypercall replaces ``WRCR ptbr``?  (read from the kernel source's
  ``.if PARAVIRT`` blocks)
* 06.3 -- how many ``mmu_update`` hypercalls does the boot workload make with batch size 16?
  (run by the checker)
* 06.4 -- how many code lines of the guest kernel (``kernel.s`` and the ``kernel/*.s`` files
  it includes) differ between the two builds?  (counted in the source)
"""
from __future__ import annotations

from . import exercise

#: the batch size of exercise 06.3
BATCH_063 = 16


def _as_int(answer):
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"expected a whole number, got {type(answer).__name__} {answer!r}")
    return answer


def pv_kernel_ring() -> int:
    """The ring the CPU is in while the PARAVIRT kernel boots under the paravirt monitor
    (the run is stopped after 1,000 instructions, still inside the kernel's boot code)."""
    from ..experiments import Config, image_of, run
    config = Config("boot", "paravirt", budget=1000)
    image, result = image_of(config), run(config)
    if result.stop != "budget" or not image.entry <= result.pc < image.symbol("text_end"):
        raise RuntimeError("the PV kernel was expected to be still booting after 1,000 "
                           "instructions")
    return int(result.cpl)


@exercise("06.1", "The ring of a paravirtualized kernel",
          hints=["The seed says ring 0. Run a PARAVIRT guest under 'paravirt' for a few "
                 "instructions and look at the result's cpl.",
                 "Xen takes ring 0 for itself; the applications stay in ring 3."])
def _check_ring(answer):
    expected = pv_kernel_ring()
    if _as_int(answer) != expected:
        if answer == 0:
            return False, ("ring 0 is what the seed says, but ring 0 belongs to the hypervisor: "
                           "only one of them can be most privileged")
        return False, f"the PV kernel does not run in ring {answer}"
    return True, (f"ring {expected}: the simulator's PV kernel runs there, as 32-bit Xen "
                  f"guests did (64-bit PV kernels run in ring 3)")


@exercise("06.2", "The hypercall that replaces WRCR ptbr",
          hints=["Look at the table of replacements, or search the kernel sources (kernel.s, "
                 "kernel/*.s) for 'wrcr ptbr'.",
                 "Answer with the hypercall's name as a string, e.g. 'set_timer'."])
def _check_ptbr(answer):
    from ..guest import HYPERCALLS
    from ..lessons.porting import replaced_by
    if not isinstance(answer, str):
        return False, f"expected a hypercall name (a string), got {answer!r}"
    name = answer.strip().lower().removeprefix("hc_")
    if name not in HYPERCALLS:
        return False, f"{answer!r} is not a hypercall; known: {', '.join(HYPERCALLS)}"
    expected = replaced_by("wrcr ptbr")
    if [name] != expected:
        return False, f"{name} is not what the PARAVIRT build does instead of WRCR ptbr"
    return True, (f"every 'wrcr ptbr' of the native kernel became hypercall {name} "
                  f"(number {HYPERCALLS[name]}), read from the kernel sources")


@exercise("06.3", f"mmu_update hypercalls of boot with batch size {BATCH_063}",
          hints=["batch_explorer(): choose boot and batch size 16, or run "
                 "pv_run('boot', 16) and read monitor_events['hypercall:mmu_update'].",
                 "Count hypercalls, not the page-table entries they carry."])
def _check_batch(answer):
    from ..lessons.paravirt import mmu_updates, pte_updates, pv_run
    result = pv_run("boot", BATCH_063)
    expected = mmu_updates(result)
    given = _as_int(answer)
    if given == pte_updates(result):
        return False, "that is the number of page-table entries updated, not of hypercalls"
    if given != expected:
        return False, f"{given} is not the number of mmu_update hypercalls with batch {BATCH_063}"
    return True, (f"{expected} mmu_update hypercalls carried {pte_updates(result)} updates "
                  f"(counted by running the boot workload)")


@exercise("06.4", "Lines the port changed",
          hints=["porting_cost() counts them: changed_lines.",
                 "Count the code lines of both branches: PARAVIRT-only plus native-only."])
def _check_lines(answer):
    from ..lessons.porting import porting_cost
    cost = porting_cost()
    given = _as_int(answer)
    if given == cost.paravirt_lines:
        return False, "that is the PARAVIRT branches only; the native-only lines changed too"
    if given != cost.changed_lines:
        return False, f"{given} is not the number of code lines that differ between the builds"
    return True, (f"{cost.changed_lines} of {cost.code_lines} code lines "
                  f"({cost.percent:.1f}%) differ, counted in the kernel sources")
