; machine.s -- the toy machine's architectural constants, for assembly programs.
; generated from kernel_sim/isa.py by `python -m kernel_sim.tools.generate`:
; DO NOT EDIT.  Change kernel_sim/isa.py and run the generator again.

; ---- paging
PAGE_SHIFT        = 12
PAGE_SIZE         = 4096
LEVEL_BITS        = 10
PTE_P             = 1
PTE_W             = 2
PTE_U             = 4
PTE_A             = 32
PTE_D             = 64
PTE_FRAME_MASK    = 0xFFFFF000

; ---- page-fault error code bits
PF_PRESENT        = 1
PF_WRITE          = 2
PF_USER           = 4
PF_FETCH          = 16

; ---- flags word (PUSHF / POPF, trap frames)
FLAG_IF           = 0x200

; ---- trap vectors
VEC_DE            = 0
VEC_UD            = 6
VEC_GP            = 13
VEC_PF            = 14
VEC_TIMER         = 32
VEC_SYSCALL       = 128
NUM_VECTORS       = 256
