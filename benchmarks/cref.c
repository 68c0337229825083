/*
 * cref.c -- a C reference interpreter for the user-mode subset of the kernel_sim ISA.
 *
 * Why it exists
 * -------------
 * The course claims that the Numba-jitted CPU (kernel_sim/cpu.py, functions `run_native` and
 * `execute`) runs guest code "close to a C interpreter of the same ISA".  This file is that C
 * interpreter.  benchmarks/run.py builds it with the machine's C compiler at -O2, loads it with
 * ctypes and runs the *same* guest program on the *same* NumPy arrays as the jitted kernel, then
 * checks that both left identical registers, control state, counters, memory and TLB.
 *
 * An honest peer, not a faster cousin
 * -----------------------------------
 * The loop below does the work `execute` does for every instruction, in the same order:
 *
 *   timer deadline check -> interrupt check -> `until` and budget checks -> fetch through the
 *   inline TLB-hit test (same key, same permission "need", same bus check, EV_TLB_HIT counted)
 *   -> decode -> execute -> one shared data-access block (same inline TLB test) -> retire
 *   (ticks, retired, per-opcode counter, C_DELIVERIES reset).
 *
 * On a TLB miss it walks the page tables exactly like kernel_sim/mmu.py (EV_TLB_MISS,
 * EV_WALK_REFS, accessed/dirty bits, TLB fill).  At exit it turns event counts into cycles like
 * `charge_cycles` and writes the stop record into the trace like `run_native`.
 * It uses the same state layout (int64 regs[16], int64 ctrl[NUM_CTRL], uint32 mem[],
 * int64 tlb[2*S], int64 counters[NUM_COUNTERS], int64 costs[NUM_COSTS], int64 trace[T][4])
 * and no tricks the Numba side cannot have (no `restrict`, no computed goto, no dropped checks).  Dispatch is a plain `switch`.
 *
 * What it does NOT implement: trap delivery, I/O ports, control-register instructions and the
 * sensitive instructions.  Whenever the jitted kernel would take one of those slow paths (a
 * fault, an interrupt, SYSCALL, a privileged instruction in ring 0 other than HLT, ...) this
 * interpreter stops with STOP_UNSUPPORTED instead.  The benchmark program never gets there.
 *
 * Constants: none are written here.  benchmarks/run.py generates `kernel_sim_constants.h` from
 * kernel_sim/isa.py, kernel_sim/state.py and kernel_sim/mmu.py (`constants_header()`) into the
 * build directory before it compiles this file, so the C reference always uses the layout and
 * the opcodes of the package it is compared with: there is nothing to keep in sync.  Only the
 * markers private to this loop are defined below.  tests/test_benchmarks.py runs C and Numba
 * side by side and fails if they ever disagree.
 */
#include <stdint.h>

#include "kernel_sim_constants.h"

/* markers private to this interpreter (kernel_sim/cpu.py has its own) */
#define NO_ACCESS (-1)
#define MISS (-5000)
#define STOP_UNSUPPORTED 100   /* only here: the kernel would take a slow path we do not model */

/* A 32-bit word read as a signed integer (cpu.s32). */
static inline int64_t s32(int64_t x) { return x - ((x & 0x80000000LL) << 1); }

/* mmu.walk: walk the page tables for va; fill TLB entry tlb_i with key on success. */
static int64_t walk(int64_t va, int64_t acc, int64_t cpl, int64_t ptbr, int64_t levels,
                    uint32_t *mem, int64_t mem_bytes, int64_t *tlb, int64_t tlb_i, int64_t key,
                    int64_t *counters)
{
    int write = (acc & ACC_WRITE) != 0;
    int user = cpl == 3;
    int64_t err = 0;
    if (write) err |= PF_WRITE;
    if (user) err |= PF_USER;
    if (acc & ACC_FETCH) err |= PF_FETCH;
    int64_t top_bits = levels * 10 + 12;
    if (top_bits < 32 && (va >> top_bits) != 0)
        return -1 - err;
    int64_t table = ptbr & PTE_FRAME_MASK;
    int64_t perm = PTE_W | PTE_U;
    int64_t pte = 0, pte_word = 0;
    for (int64_t k = levels - 1; k >= 0; k--) {
        int64_t idx = (va >> (12 + 10 * k)) & 0x3FF;
        int64_t pte_addr = table + 4 * idx;
        if (pte_addr >= mem_bytes)
            return BUS_ERROR;
        counters[EV_WALK_REFS] += 1;
        pte_word = pte_addr >> 2;
        pte = mem[pte_word];
        if ((pte & PTE_P) == 0)
            return -1 - err;
        if ((pte & PTE_A) == 0) {
            pte |= PTE_A;
            mem[pte_word] = (uint32_t)pte;
        }
        perm &= pte;
        table = pte & PTE_FRAME_MASK;
    }
    if (write && (perm & PTE_W) == 0) return -1 - (err | PF_PRESENT);
    if (user && (perm & PTE_U) == 0) return -1 - (err | PF_PRESENT);
    if (write && (pte & PTE_D) == 0) {
        pte |= PTE_D;
        mem[pte_word] = (uint32_t)pte;
    }
    int64_t value = table | (perm & (PTE_W | PTE_U));
    if (pte & PTE_D) value |= PTE_D;
    tlb[2 * tlb_i] = key;
    tlb[2 * tlb_i + 1] = value;
    return table | (va & 0xFFF);
}

/* mmu.tlb_miss: the slow path of a paged access (count the miss, walk, check the bus). */
static int64_t tlb_miss(int64_t va, int64_t acc, int64_t cpl, int64_t ptbr, int64_t levels,
                        uint32_t *mem, int64_t mem_bytes, int64_t *tlb, int64_t tlb_mask,
                        int64_t *counters)
{
    counters[EV_TLB_MISS] += 1;
    int64_t vpn = va >> 12;
    int64_t key = (((ptbr & 0xFFF) << 20) | vpn) + 1;
    int64_t pa = walk(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, vpn & tlb_mask, key,
                      counters);
    if (pa >= mem_bytes) return BUS_ERROR;
    return pa;
}

/* cpu.raise_fault: a translate() fault code -> vector (error code via *err). */
static int64_t raise_fault(int64_t code, int64_t va, int64_t *ctrl, int64_t *counters,
                           int64_t *err)
{
    if (code == BUS_ERROR) { *err = 0; return VEC_GP; }
    ctrl[C_FAULT_ADDR] = va;
    counters[EV_PAGE_FAULTS] += 1;
    *err = -1 - code;
    return VEC_PF;
}

/* cpu.execute: the interpreter loop (user-mode subset). */
static int64_t execute(int64_t *regs, int64_t *ctrl, uint32_t *mem, int64_t *tlb,
                       int64_t tlb_len, int64_t *counters, int64_t budget)
{
    int64_t mem_bytes = ctrl[C_MEM_BYTES];
    int64_t tlb_mask = (tlb_len >> 1) - 1;
    int64_t until = ctrl[C_UNTIL];
    int64_t levels = ctrl[C_LEVELS];
    int64_t pc = ctrl[C_PC];
    int64_t cpl = ctrl[C_CPL];
    int64_t iflag = ctrl[C_IF];
    int64_t paging = ctrl[C_PAGING] & 1;
    int64_t ptbr = ctrl[C_PTBR];
    int64_t asid_key = ((ptbr & 0xFFF) << 20) + 1;
    int64_t user_need = cpl == 3 ? PTE_U : 0;
    int64_t ticks = ctrl[C_TICKS];
    int64_t deadline = ctrl[C_TIMER_DEADLINE];
    int64_t retired = 0;
    int64_t stop = STOP_NONE;

    for (;;) {
        /* 1-2. timer and interrupts */
        if (ticks >= deadline) {
            ctrl[C_TIMER_PENDING] = 1;
            deadline += ctrl[C_TIMER_PERIOD];
        }
        if (iflag != 0 && ctrl[C_TIMER_PENDING] != 0) {
            /* the kernel would deliver VEC_TIMER here */
            ctrl[C_STOP_VECTOR] = VEC_TIMER;
            ctrl[C_STOP_ERROR] = 0;
            stop = STOP_UNSUPPORTED;
            break;
        }
        /* 3. stop checks */
        if (pc == until) { stop = STOP_UNTIL; break; }
        if (retired >= budget) { stop = STOP_BUDGET; break; }
        /* 4. fetch (TLB-hit test inline) */
        int64_t vec = -1, err = 0, op = 0, pa;
        int64_t word = 0, a = 0, npc = 0, va = 0, acc = NO_ACCESS;
        if (paging == 0) {
            pa = pc < mem_bytes ? pc : BUS_ERROR;
        } else {
            int64_t vpn = pc >> 12;
            int64_t i = 2 * (vpn & tlb_mask);
            pa = MISS;
            if (tlb[i] == asid_key + vpn) {
                int64_t value = tlb[i + 1];
                if ((value & user_need) == user_need) {
                    counters[EV_TLB_HIT] += 1;
                    pa = (value & PTE_FRAME_MASK) | (pc & 0xFFF);
                    if (pa >= mem_bytes) pa = BUS_ERROR;
                }
            }
            if (pa == MISS)
                pa = tlb_miss(pc, ACC_FETCH, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask,
                              counters);
        }
        if (pa < 0) {
            vec = raise_fault(pa, pc, ctrl, counters, &err);
        } else {
            word = (int64_t)mem[pa >> 2];
            op = word >> 24;
            a = (word >> 20) & 15;
            int64_t b = (word >> 16) & 15;
            int64_t imm = word & 0xFFFF;
            int64_t simm = imm - ((imm & 0x8000) << 1);
            npc = (pc + 4) & WORD_MASK;
            /* 5. decode and execute */
            switch (op) {
            case OP_NOP: break;
            case OP_MOV: regs[a] = regs[b]; break;
            case OP_MOVI: regs[a] = simm & WORD_MASK; break;
            case OP_LUI: regs[a] = imm << 16; break;
            case OP_ADD: regs[a] = (regs[b] + regs[imm & 15]) & WORD_MASK; break;
            case OP_SUB: regs[a] = (regs[b] - regs[imm & 15]) & WORD_MASK; break;
            case OP_AND: regs[a] = regs[b] & regs[imm & 15]; break;
            case OP_OR: regs[a] = regs[b] | regs[imm & 15]; break;
            case OP_XOR: regs[a] = regs[b] ^ regs[imm & 15]; break;
            case OP_SHL: regs[a] = (regs[b] << (regs[imm & 15] & 31)) & WORD_MASK; break;
            case OP_SHR: regs[a] = regs[b] >> (regs[imm & 15] & 31); break;
            case OP_SAR: regs[a] = (s32(regs[b]) >> (regs[imm & 15] & 31)) & WORD_MASK; break;
            case OP_MUL: {
                /* split so the product never overflows int64 (same low 32 bits), as cpu.py */
                int64_t x = regs[b], y = regs[imm & 15];
                regs[a] = ((x & 0xFFFF) * y + ((((x >> 16) * y) & 0xFFFF) << 16)) & WORD_MASK;
                break;
            }
            case OP_DIV:
            case OP_MOD: {
                int64_t d = regs[imm & 15];
                if (d == 0) vec = VEC_DE;
                else if (op == OP_DIV) regs[a] = regs[b] / d;
                else regs[a] = regs[b] % d;
                break;
            }
            case OP_SLT: regs[a] = s32(regs[b]) < s32(regs[imm & 15]) ? 1 : 0; break;
            case OP_SLTU: regs[a] = regs[b] < regs[imm & 15] ? 1 : 0; break;
            case OP_ADDI: regs[a] = (regs[b] + simm) & WORD_MASK; break;
            case OP_ANDI: regs[a] = regs[b] & imm; break;
            case OP_ORI: regs[a] = regs[b] | imm; break;
            case OP_XORI: regs[a] = regs[b] ^ imm; break;
            case OP_SHLI: regs[a] = (regs[b] << (imm & 31)) & WORD_MASK; break;
            case OP_SHRI: regs[a] = regs[b] >> (imm & 31); break;
            case OP_SARI: regs[a] = (s32(regs[b]) >> (imm & 31)) & WORD_MASK; break;
            case OP_LD: va = (regs[b] + simm) & WORD_MASK; acc = 0; break;
            case OP_ST: va = (regs[b] + simm) & WORD_MASK; acc = ACC_WRITE; break;
            case OP_PUSH:
            case OP_CALL:
            case OP_CALLR: va = (regs[SP] - 4) & WORD_MASK; acc = ACC_WRITE; break;
            case OP_POP:
            case OP_RET: va = regs[SP]; acc = 0; break;
            case OP_BEQ: if (regs[a] == regs[b]) npc = (npc + 4 * simm) & WORD_MASK; break;
            case OP_BNE: if (regs[a] != regs[b]) npc = (npc + 4 * simm) & WORD_MASK; break;
            case OP_BLT: if (s32(regs[a]) < s32(regs[b])) npc = (npc + 4 * simm) & WORD_MASK; break;
            case OP_BGE: if (s32(regs[a]) >= s32(regs[b])) npc = (npc + 4 * simm) & WORD_MASK; break;
            case OP_BLTU: if (regs[a] < regs[b]) npc = (npc + 4 * simm) & WORD_MASK; break;
            case OP_BGEU: if (regs[a] >= regs[b]) npc = (npc + 4 * simm) & WORD_MASK; break;
            case OP_JMP: {
                int64_t off = word & 0xFFFFFF;
                npc = (npc + 4 * (off - ((off & 0x800000) << 1))) & WORD_MASK;
                break;
            }
            case OP_JR: npc = regs[a]; break;
            case OP_SYSCALL: break;   /* retires below, then the kernel would trap */
            default:
                if (op >= OP_PUSHF && op <= OP_RDTVB) {
                    /* sensitive instructions: not modelled here */
                    ctrl[C_STOP_ERROR] = op;   /* stop before it */
                    goto unsupported_opcode;
                } else if (op >= OP_SYSRET && op <= OP_TLBFLUSH) {
                    if (cpl != 0) {
                        vec = VEC_GP;
                        counters[EV_PRIV_FAULTS] += 1;
                    } else if (op == OP_HLT) {
                        counters[EV_HLT] += 1;
                    } else {
                        ctrl[C_STOP_ERROR] = op;
                        goto unsupported_opcode;
                    }
                } else {
                    vec = VEC_UD;
                }
            }

            /* the data access of a memory instruction (TLB-hit test inline) */
            if (acc != NO_ACCESS) {
                if (paging == 0) {
                    pa = va < mem_bytes ? va : BUS_ERROR;
                } else {
                    int64_t vpn = va >> 12;
                    int64_t i = 2 * (vpn & tlb_mask);
                    pa = MISS;
                    if (tlb[i] == asid_key + vpn) {
                        int64_t value = tlb[i + 1];
                        int64_t need = user_need | (acc == ACC_WRITE ? (PTE_W | PTE_D) : 0);
                        if ((value & need) == need) {
                            counters[EV_TLB_HIT] += 1;
                            pa = (value & PTE_FRAME_MASK) | (va & 0xFFF);
                            if (pa >= mem_bytes) pa = BUS_ERROR;
                        }
                    }
                    if (pa == MISS)
                        pa = tlb_miss(va, acc, cpl, ptbr, levels, mem, mem_bytes, tlb, tlb_mask,
                                      counters);
                }
                if (pa < 0) {
                    vec = raise_fault(pa, va, ctrl, counters, &err);
                } else if (op == OP_LD) {
                    regs[a] = mem[pa >> 2];
                } else if (op == OP_ST) {
                    mem[pa >> 2] = (uint32_t)regs[a];
                } else if (acc == ACC_WRITE) {
                    /* PUSH, CALL, CALLR: write the word, then move sp */
                    if (op == OP_PUSH) {
                        mem[pa >> 2] = (uint32_t)regs[a];
                    } else {
                        mem[pa >> 2] = (uint32_t)npc;
                        if (op == OP_CALL) {
                            int64_t off = word & 0xFFFFFF;
                            npc = (npc + 4 * (off - ((off & 0x800000) << 1))) & WORD_MASK;
                        } else {
                            npc = regs[a];
                        }
                    }
                    regs[SP] = va;
                } else {
                    /* POP, RET: read the word, move sp, then use the value */
                    int64_t value = (int64_t)mem[pa >> 2];
                    regs[SP] = (va + 4) & WORD_MASK;
                    if (op == OP_POP) regs[a] = value;
                    else npc = value;
                }
            }
        }
        if (vec >= 0) {
            /* the kernel would deliver the fault here (return pc = pc) */
            ctrl[C_STOP_VECTOR] = vec;
            ctrl[C_STOP_ERROR] = err;
            stop = STOP_UNSUPPORTED;
            break;
        }
        /* retire */
        ticks += 1;
        retired += 1;
        counters[EV_OP_BASE + op] += 1;
        ctrl[C_DELIVERIES] = 0;
        pc = npc;
        if (op == OP_SYSCALL || op == OP_HLT) {
            if (op == OP_SYSCALL) {
                ctrl[C_STOP_VECTOR] = VEC_SYSCALL;
                ctrl[C_STOP_ERROR] = 0;
                stop = STOP_UNSUPPORTED;
                break;
            } else if (iflag != 0 && ctrl[C_TIMER_PENDING] != 0) {
                /* an interrupt is already waiting: it is taken at the next step */
            } else if (iflag != 0 && ctrl[C_TIMER_PERIOD] != 0) {
                if (deadline > ticks) {
                    counters[EV_IDLE_TICKS] += deadline - ticks;
                    ticks = deadline;
                }
            } else {
                stop = STOP_HALT;
                break;
            }
        }
    }
    goto finish;
unsupported_opcode:   /* an instruction this reference does not model (opcode in C_STOP_ERROR) */
    ctrl[C_STOP_VECTOR] = -1;
    stop = STOP_UNSUPPORTED;
finish:
    ctrl[C_PC] = pc;
    ctrl[C_CPL] = cpl;
    ctrl[C_IF] = iflag;
    ctrl[C_TICKS] = ticks;
    ctrl[C_TIMER_DEADLINE] = deadline;
    ctrl[C_STOP_REASON] = stop;
    counters[EV_INSTRUCTIONS] += retired;
    return stop;
}

/*
 * cref_run_native: the peer of cpu.run_native.  Snapshots the counters, runs, writes the stop
 * record into the trace ring and charges the cycles of everything counted during the run.
 * trace points at an int64 [trace_rows][4] C-contiguous array.
 */
int64_t cref_run_native(int64_t *regs, int64_t *ctrl, uint32_t *mem, int64_t *tlb,
                        int64_t tlb_len, int64_t *costs, int64_t *counters, int64_t *trace,
                        int64_t trace_rows, int64_t budget)
{
    int64_t before[4], ops_before[256];
    before[0] = counters[EV_TLB_MISS];
    before[1] = counters[EV_WALK_REFS];
    before[2] = counters[EV_TRAPS];
    before[3] = counters[EV_IDLE_TICKS];
    for (int op = 0; op < 256; op++)
        ops_before[op] = counters[EV_OP_BASE + op];

    int64_t stop = execute(regs, ctrl, mem, tlb, tlb_len, counters, budget);

    if (trace_rows > 0) {   /* cpu.trace_event(ctrl, trace, TRACE_STOP, pc, stop) */
        int64_t pos = ctrl[C_TRACE_POS];
        int64_t j = pos % trace_rows;
        trace[4 * j + 0] = ctrl[C_TICKS];
        trace[4 * j + 1] = ctrl[C_PC];
        trace[4 * j + 2] = TRACE_STOP;
        trace[4 * j + 3] = stop;
        ctrl[C_TRACE_POS] = pos + 1;
    }
    int64_t cyc = 0;   /* cpu.charge_cycles */
    for (int op = 0; op < 256; op++)
        cyc += (counters[EV_OP_BASE + op] - ops_before[op]) * costs[op];
    cyc += (counters[EV_TLB_MISS] - before[0]) * costs[K_TLB_MISS];
    cyc += (counters[EV_WALK_REFS] - before[1]) * costs[K_WALK_REF];
    cyc += (counters[EV_TRAPS] - before[2]) * costs[K_TRAP];
    cyc += (counters[EV_IDLE_TICKS] - before[3]) * costs[K_IDLE_TICK];
    ctrl[C_CYCLES] += cyc;
    return stop;
}
