; divzero.s -- the `divzero` workload.  One operation = one division by zero: #DE traps into the
; kernel, which counts it and resumes after the DIV (a signal handler that skips it).  A
; faulting instruction changes nothing, so r5 must keep its value.  Exit status = mismatches.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = number of divisions
        mov  r8, r1
        movi r9, 0
        movi r4, 0
        movi r2, 0                  ; the divisor
        movi r3, 7
loop:
        beq  r8, r4, done
        movi r5, 0x55
        div  r5, r3, r2             ; #DE
        movi r6, 0x55
        beq  r5, r6, same
        addi r9, r9, 1
same:
        addi r8, r8, -1
        jmp  loop
done:
        mov  r1, r9
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
