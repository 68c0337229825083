"""The binary translator's translation cache, on its own (no monitor): what it emits."""
import numpy as np
import pytest

from kernel_sim import isa
from kernel_sim.asm import assemble, disassemble_word
from kernel_sim.monitors.translator import (CO_CALL, CO_EMULATE, CO_EXIT, CO_RET, CO_STORE,
                                            CO_UD, MAX_BLOCK, TC_VA, TranslationCache,
                                            TranslationCacheFull)

BASE = 0x10000


def cache(size=0x4000):
    mem = np.zeros(0x40000 // 4, dtype=np.uint32)
    return mem, TranslationCache(mem, BASE, size)


def guest(source):
    prog = assemble(source)
    words = {}
    for address, ws in prog.segments:
        for k, w in enumerate(ws):
            words[address + 4 * k] = int(w)
    return prog, (lambda va: words.get(va, 0))


def translate(tc, source, pc=0x1000):
    prog, fetch = guest(".org 0x1000\n" + source)
    return tc.translate(pc, 0x1000, fetch)


def tc_words(tc, block):
    return [tc.word_at(a) for a in range(block.tc_start, block.tc_end, 4)]


def test_innocuous_instructions_are_copied_word_for_word():
    mem, tc = cache()
    block = translate(tc, "add r1, r2, r3\nld r4, [r5 + 8]\nst r4, [r6]\nsyscall\njmp 0x1000\n")
    prog, fetch = guest(".org 0x1000\nadd r1, r2, r3\nld r4, [r5 + 8]\nst r4, [r6]\nsyscall\n")
    assert tc_words(tc, block)[:4] == [fetch(0x1000 + 4 * k) for k in range(4)]
    assert block.guest_pcs[:5] == [0x1000, 0x1004, 0x1008, 0x100C, 0x1010]


def test_a_loop_back_to_its_own_block_start_becomes_a_stub_until_chained():
    mem, tc = cache()
    block = translate(tc, "loop: addi r1, r1, 1\nbne r1, r2, loop\nhlt\n")
    words = tc_words(tc, block)
    # the branch points at an exit stub (the block did not exist while it was translated)
    branch_at = block.tc_start + 4
    target = branch_at + 4 + 4 * isa.sign16(words[1] & 0xFFFF)
    stub = tc.word_at(target)
    assert stub >> 24 == isa.OP_CALLOUT
    co = tc.callout(stub & 0xFFFF)
    assert co.kind == CO_EXIT and co.target == 0x1000 and co.branch_at == branch_at
    # chaining patches the branch to the block's own start
    assert tc.chain(co, block)
    patched = tc.word_at(branch_at)
    assert branch_at + 4 + 4 * isa.sign16(patched & 0xFFFF) == block.tc_start
    assert patched >> 16 == words[1] >> 16           # same opcode and registers


def test_privileged_and_sensitive_instructions_become_callouts_with_the_guest_pc():
    mem, tc = cache()
    block = translate(tc, "cli\npopf\ngetcpl r1\nwrcr ptbr, r2\nnop\n")
    words = tc_words(tc, block)
    kinds = [tc.callout(w & 0xFFFF) for w in words[:4]]
    assert [k.kind for k in kinds] == [CO_EMULATE] * 4
    assert [k.guest_pc for k in kinds] == [0x1000, 0x1004, 0x1008, 0x100C]
    assert len(words) == 4           # WRCR may switch address spaces: the block ends there


def test_calls_returns_and_invalid_opcodes_become_callouts_and_end_the_block():
    for source, kind in (("call 0x1100\n", CO_CALL), ("ret\n", CO_RET),
                         (".word 0xF2000000\n", CO_UD), ("vmcall 1\n", CO_UD)):
        mem, tc = cache()
        block = translate(tc, "nop\n" + source + "nop\n")
        words = tc_words(tc, block)
        assert len(words) == 2, source
        co = tc.callout(words[1] & 0xFFFF)
        assert co.kind == kind and co.guest_pc == 0x1004, source
        if kind == CO_CALL:
            assert co.target == 0x1100


def test_a_block_without_a_transfer_ends_with_an_exit_at_the_page_end_or_max_length():
    mem, tc = cache()
    block = translate(tc, "nop\n" * (MAX_BLOCK + 5))
    words = tc_words(tc, block)
    assert len(words) == MAX_BLOCK + 1
    co = tc.callout(words[-1] & 0xFFFF)
    assert co.kind == CO_EXIT and co.target == 0x1000 + 4 * MAX_BLOCK
    mem, tc = cache()
    prog, fetch = guest(".org 0x1FF8\nnop\nnop\nnop\n")
    block = tc.translate(0x1FF8, 0x1000, fetch)
    assert tc.callout(tc.word_at(block.tc_end - 4) & 0xFFFF).target == 0x2000


def test_faults_in_translated_code_map_back_to_the_guest_pc():
    mem, tc = cache()
    block = translate(tc, "nop\nld r1, [r2]\nhlt\n")
    assert tc.guest_pc(block.tc_start + 4) == 0x1004
    with pytest.raises(KeyError):
        tc.guest_pc(TC_VA + 0x3000)


def test_invalidating_a_page_drops_its_blocks_and_unchains_branches_into_them():
    mem, tc = cache()
    prog, fetch = guest(".org 0x1000\nloop: addi r1, r1, 1\nbne r1, r2, loop\nhlt\n")
    a = tc.translate(0x1000, 0x1000, fetch)
    stub_co = next(tc.callout(w & 0xFFFF) for w in tc_words(tc, a)
                   if w >> 24 == isa.OP_CALLOUT and tc.callout(w & 0xFFFF).kind == CO_EXIT
                   and tc.callout(w & 0xFFFF).branch_at >= 0)
    tc.chain(stub_co, a)
    assert tc.invalidate_page(0x1000) == 1
    assert tc.lookup((0x1000, 0x1000)) is None and not tc.has_code(0x1000)
    assert all(w == 0 for w in tc_words(tc, a))     # stale code cannot run silently


def test_adaptive_retranslation_turns_a_store_into_a_callout():
    mem, tc = cache()
    prog, fetch = guest(".org 0x1000\nst r1, [r2]\nhlt\n")
    first = tc.translate(0x1000, 0x1000, fetch)
    assert tc.word_at(first.tc_start) == fetch(0x1000)
    again = tc.translate(0x1000, 0x1000, fetch, store_callouts={0x1000})
    assert not first.valid and again.valid
    co = tc.callout(tc.word_at(again.tc_start) & 0xFFFF)
    assert co.kind == CO_STORE and co.word == fetch(0x1000)


def test_a_full_cache_says_so():
    mem, tc = cache(size=0x1000)
    prog, fetch = guest(".org 0x1000\n" + "nop\n" * 1024)
    with pytest.raises(TranslationCacheFull):
        for k in range(40):
            tc.translate(0x1000 + 4 * MAX_BLOCK * k, 0x1000, fetch)


def test_translation_writes_only_inside_its_region():
    mem, tc = cache()
    before = mem.copy()
    translate(tc, "cli\nnop\nbne r1, r2, 0x1000\nret\n")
    changed = np.nonzero(mem != before)[0] * 4
    assert changed.size and changed.min() >= BASE and changed.max() < BASE + tc.size


def test_show_pairs_guest_instructions_with_their_translation():
    mem, tc = cache()
    block = translate(tc, "cli\nadd r1, r2, r3\nret\n")
    rows = tc.show(block)
    assert rows[0][0] == "0x00001000" and "callout" in rows[0][1] and "emulate" in rows[0][1]
    assert rows[1][1].endswith(disassemble_word(tc.word_at(block.tc_start + 4),
                                                pc=block.tc_start + 4))
    assert "ret" in rows[2][1]
