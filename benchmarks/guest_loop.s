; guest_loop.s -- the guest program every engine runs in the benchmark (benchmarks/run.py).
;
; A user-mode (ring 3) checksum loop that never halts: the instruction budget stops it, so every
; engine retires exactly the same number of instructions.  Per array word it does a load, ALU
; work, a store and a loop branch; every 16 words it calls a small function that pushes, pops,
; multiplies, divides and loads from a far-away table.
;
; Memory layout (identity-mapped user pages when paging is on; TLB of 64 entries, direct-mapped,
; slot = virtual page number mod 64):
;   0x01000  code                 page 1    slot 1
;   0x02000  stack (sp = 0x3000)  page 2    slot 2
;   0x10000  DATA, 16 pages       pages 16..31, slots 16..31
;   0x50000  TABLE                page 80   slot 16 -- the same slot as the first DATA page
; While the loop walks the first DATA page, each call of `mix` evicts that page's translation
; and the next load evicts TABLE's: a steady trickle of TLB misses and page walks among mostly
; TLB hits.

DATA      = 0x10000
NWORDS    = 16384           ; 16 pages of 1024 words
TABLE     = 0x50000
STACK_TOP = 0x3000

        .org 0x1000
start:  li   sp, STACK_TOP
        li   r2, 0x12345678  ; r2: running checksum (seed)
        movi r11, 13         ; r11: divisor for mix
outer:  li   r1, DATA        ; r1: pointer into the array
        li   r4, NWORDS      ; r4: words left in this pass
inner:  ld   r5, [r1]
        add  r2, r2, r5
        shli r6, r2, 5
        shri r7, r2, 27
        or   r2, r6, r7      ; checksum = rotate_left(checksum + word, 5)
        xor  r5, r5, r2
        st   r5, [r1]        ; the array changes on every pass
        addi r1, r1, 4
        addi r4, r4, -1
        andi r6, r4, 15
        bne  r6, r0, inner   ; r0 stays 0: nothing writes it
        call mix             ; every 16 words
        bne  r4, r0, inner
        addi r12, r12, 1     ; r12: passes completed
        jmp  outer

; mix: fold the checksum into r13 through a multiply, a divide and a far load.
mix:    push r2
        li   r8, TABLE
        ld   r9, [r8]        ; TABLE shares a TLB slot with the first DATA page
        mul  r9, r9, r2
        div  r10, r9, r11
        mod  r3, r9, r11
        sub  r10, r10, r3
        sltu r3, r10, r9
        sar  r10, r10, r3
        blt  r10, r0, skip   ; signed: taken when bit 31 of r10 is set
        xori r10, r10, 0x5a5a
skip:   add  r13, r13, r10
        pop  r2
        ret

        .org TABLE
        .word 0x9e3779b9
