; sleep.s -- sleeps for r1 timer ticks (the kernel idles meanwhile if nobody else runs).
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:
        movi r0, SYS_SLEEP
        syscall
        mov  r1, r0                 ; 0 on success
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
