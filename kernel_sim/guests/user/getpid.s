; getpid.s -- prints its process id.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
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

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
