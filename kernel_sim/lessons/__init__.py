"""Chapter code: the experiments and data one notebook teaches with.

Each module belongs to one chapter and stands on the engine (isa, asm, machine, cpu, mmu, vmx),
the guests and the monitors; nothing below this floor imports it.

=================  =========  ===============================================================
module             notebook   what it holds
=================  =========  ===============================================================
``history``        01         the timeline of virtualization and its kinds, as data
``rings``          02         the protection-ring probe: one program run in rings 0..3
``popek_goldberg`` 03         the class table, Theorem 1, small kernels that break or keep it
``porting``        06         what porting the guest kernel to the paravirtual interface changed
``pagewalk``       08         one cold TLB miss, step by step (native and two-dimensional walks)
=================  =========  ===============================================================
"""
