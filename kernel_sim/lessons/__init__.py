"""Chapter code: the experiments and data one notebook teaches with.

Each module belongs to one chapter and stands on the engine (isa, asm, machine, cpu, mmu, vmx),
the guests, the monitors and :mod:`kernel_sim.experiments` (which runs and caches every guest
run); nothing below this floor imports it.  The numbers a notebook's figures and exercise checks
share live here, so a check never imports a figure module.

=================  =========  ===============================================================
module             notebook   what it holds
=================  =========  ===============================================================
``history``        01         the timeline of virtualization and its kinds, as data
``rings``          02         the protection-ring probe: one program run in rings 0..3
``popek_goldberg`` 03         the class table, Theorem 1, small kernels that break or keep it
``emulation``      04         emulation runs in both modes, slowdowns against native
``translation``    05         trap-and-emulate and binary translation: events and cycles per
                              iteration, emulated instructions, shadow-paging counters
``porting``        06         what porting the guest kernel to the paravirtual interface changed
``paravirt``       06         paravirt runs, mmu_update batching, cycles per operation
``pagewalk``       08         one cold TLB miss, step by step (native and two-dimensional walks)
``memory``         08         hw_shadow against hw_ept: runs, exits, TLB-size sweeps
=================  =========  ===============================================================
"""
