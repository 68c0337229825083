; hello.s -- prints one line and exits with status 0.
start:
        la   r1, greeting
        call lib_puts
        movi r1, 0
        jmp  lib_exit

greeting: .string "hello, world\n"
