; preempt.s -- the `preempt` workload: two CPU-bound processes that never yield.  fork once;
; each process then does r1 chunks of arithmetic (about 6000 instructions each) and prints
; one letter after every chunk ('a' parent, 'b' child).  Only the timer interrupt can take the
; CPU from one and give it to the other, so the letters interleave in runs of a time slice.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
CHUNK = 2000
start:                              ; r1 = chunks per process
        mov  r8, r1
        movi r4, 0
        movi r0, SYS_FORK
        syscall
        mov  r9, r0
        la   r10, letter_a
        bne  r9, r4, chunk
        la   r10, letter_b
chunk:
        beq  r8, r4, done
        movi r2, CHUNK
spin:
        addi r3, r3, 7
        addi r2, r2, -1
        bne  r2, r4, spin
        movi r0, SYS_WRITE
        mov  r1, r10
        movi r2, 1
        syscall
        addi r8, r8, -1
        jmp  chunk
done:
        beq  r9, r4, child
        movi r0, SYS_WAIT
        syscall
        mov  r1, r0
        jmp  lib_exit
child:
        movi r1, 0
        jmp  lib_exit

letter_a: .word 'a'
letter_b: .word 'b'

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
