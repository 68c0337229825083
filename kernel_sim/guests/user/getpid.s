; getpid.s -- prints its process id.
start:
        la   r1, text
        call lib_puts
        movi r0, SYS_GETPID
        syscall
        mov  r1, r0
        call lib_putdec
        la   r1, newline
        call lib_puts
        movi r1, 0
        jmp  lib_exit

text:    .string "my pid is "
newline: .string "\n"
