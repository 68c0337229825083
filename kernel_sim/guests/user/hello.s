; hello.s -- prints one line and exits with status 0.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:
        la   r1, greeting
        call lib_puts
        movi r1, 0
        jmp  lib_exit

greeting: .string "hello, world\n"

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
