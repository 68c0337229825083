; sleep.s -- sleeps for r1 timer ticks (the kernel idles meanwhile if nobody else runs).
start:
        movi r0, SYS_SLEEP
        syscall
        mov  r1, r0                 ; 0 on success
        jmp  lib_exit
