"""The block viewer of notebook 05: any translated guest kernel block beside its translation.

Pick a **Workload**: the guest OS runs it under binary translation (loop count
:data:`VIEWER_COUNT`), and the **Block** menu lists every block of guest kernel code the
translator left in its translation cache, by guest address and kernel label.  Pick a block and
the table shows each guest instruction with the instruction the cache holds for it: copied
unchanged, or a callout into the monitor (in bold), plus the monitor's exit stubs.  A summary
line counts the block's callouts.

Runs are cached per workload, so going back to one is instant.  Attributes for tests:
``monitor`` (the :class:`~kernel_sim.monitors.binary_translation.BinaryTranslation` that ran),
``rows`` (what the table shows, from :func:`kernel_sim.viz.translation.block_rows`), ``table``
and ``summary`` (HTML widgets), ``message`` (refusals).
"""
from __future__ import annotations

import bisect
import html

import ipywidgets as widgets

from .. import experiments
from ..viz.translation import block_rows, block_table_html
from .base import refusal_html

#: the loop count of the runs the viewer shows (small: the blocks do not depend on it)
VIEWER_COUNT = 20


def translated_run(workload: str):
    """A :class:`BinaryTranslation` monitor that has run ``workload`` (cached per workload by
    :func:`kernel_sim.experiments.monitor_of`)."""
    return experiments.monitor_of(experiments.Config(workload, "binary_translation",
                                                     count=VIEWER_COUNT))


def block_label(kernel, pc: int) -> str:
    """``"0x00001278 trap_syscall"`` or ``"0x000012f8 trap_syscall+0x80"`` for a guest pc."""
    labels = sorted((addr, name) for name, addr in kernel.labels.items())
    k = bisect.bisect_right([a for a, _ in labels], pc) - 1
    if k < 0:
        return f"0x{pc:08x}"
    addr, name = labels[k]
    return f"0x{pc:08x} {name}" + (f"+0x{pc - addr:x}" if pc != addr else "")


def block_options(monitor) -> list[tuple[str, int]]:
    """(label, guest pc) of every translated block, by address, each pc once."""
    pcs = sorted({pc for pc, _tc, _n in monitor.translation_blocks()})
    return [(block_label(monitor.image.kernel, pc), pc) for pc in pcs]


class BlockViewer(widgets.VBox):
    """Workload and Block menus, a summary line and the block's table (see the module doc)."""

    def __init__(self, workload: str = "syscall", block: str | None = "trap_syscall"):
        super().__init__()
        from ..guest import WORKLOADS
        self._quiet = False
        self.workload = widgets.Dropdown(options=list(WORKLOADS), value=workload,
                                         description="Workload")
        self.block = widgets.Dropdown(options=[], description="Block",
                                      layout=widgets.Layout(width="420px"))
        self.message = widgets.HTML()
        self.summary = widgets.HTML()
        self.table = widgets.HTML()
        self.monitor = translated_run(workload)
        self._fill_blocks(block)
        self.workload.observe(self._on_workload, names="value")
        self.block.observe(self._on_block, names="value")
        self.children = [widgets.HBox([self.workload, self.block]), self.message, self.summary,
                         self.table]
        self._show()

    # ---- reacting to the controls -------------------------------------------------------------
    def _fill_blocks(self, wanted=None) -> None:
        """Refill the Block menu from the current run; keep ``wanted`` (a label name or pc)."""
        options = block_options(self.monitor)
        pc = self.block.value
        if isinstance(wanted, str):
            pc = self.monitor.image.symbol(wanted)
        elif isinstance(wanted, int):
            pc = wanted
        pcs = [p for _, p in options]
        quiet, self._quiet = self._quiet, True
        try:
            self.block.options = options
            self.block.value = pc if pc in pcs else pcs[0]
        finally:
            self._quiet = quiet

    def _on_workload(self, change=None) -> None:
        if self._quiet:
            return
        try:
            self.monitor = translated_run(self.workload.value)
        except (ValueError, RuntimeError) as exc:
            self._refuse(str(exc))
            return
        self._fill_blocks()
        self._show()

    def _on_block(self, change=None) -> None:
        if not self._quiet:
            self._show()

    def _show(self) -> None:
        pc = self.block.value
        self.rows = block_rows(self.monitor, pc)
        callouts = [r[2].split(";", 1)[1].strip() for r in self.rows
                    if "callout" in r[2] and r[1] != "(monitor stub)"]
        guest = sum(1 for r in self.rows if r[1] != "(monitor stub)")
        kinds = ", ".join(sorted(set(c.split()[0] for c in callouts))) or "none"
        self.summary.value = (
            f"{html.escape(block_label(self.monitor.image.kernel, pc))}: {guest} guest "
            f"instruction(s), {len(callouts)} of them callouts ({html.escape(kinds)}), "
            f"{len(self.rows) - guest} monitor stub(s); {len(self.block.options)} blocks in the "
            f"translation cache after the {html.escape(self.workload.value)} run")
        self.table.value = block_table_html(self.monitor, pc)
        self.message.value = ""

    def _refuse(self, text: str) -> None:
        self.message.value = refusal_html(text, "the table still shows the last valid block")

    def set(self, workload: str | None = None, block=None) -> bool:
        """Choose a workload and/or a block (a kernel label such as ``"kcall_leaf"`` or a guest
        pc).  A bad value is refused with a visible message; returns True when applied."""
        if workload is not None and workload not in self.workload.options:
            self._refuse(f"workload must be one of {', '.join(self.workload.options)}, "
                         f"got {workload!r}")
            return False
        monitor = translated_run(workload) if workload is not None else self.monitor
        pcs = {pc for _, pc in block_options(monitor)}
        if block is not None:
            try:
                pc = monitor.image.symbol(block) if isinstance(block, str) else block
            except KeyError as exc:
                self._refuse(exc.args[0])
                return False
            if isinstance(pc, bool) or not isinstance(pc, int) or pc not in pcs:
                where = f"0x{pc:08x}" if isinstance(pc, int) and not isinstance(pc, bool) \
                    else repr(block)
                self._refuse(f"no translated block starts at {where} in the "
                             f"{workload or self.workload.value} run")
                return False
        self._quiet = True
        try:
            if workload is not None:
                self.workload.value = workload
                self.monitor = monitor
            self._fill_blocks(block)
        finally:
            self._quiet = False
        self._show()
        return True


def block_viewer(workload: str = "syscall", block: str | None = "trap_syscall") -> BlockViewer:
    """Build the block viewer (a VBox) showing ``block`` of the ``workload`` run."""
    return BlockViewer(workload, block)


__all__ = ["block_viewer", "BlockViewer", "translated_run", "block_options", "block_label",
           "VIEWER_COUNT"]
