"""Tests of the assembler, the disassembler and the generated ISA reference.

Expected words are worked out by hand from the encoding in kernel_sim/isa.py:

    31      24 23  20 19  16 15                0
    | opcode  |  a   |  b   |      imm16        |
"""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim import isa
from kernel_sim.asm import (DIRECTIVES, AsmError, assemble, disassemble, disassemble_program,
                            disassemble_word)
from kernel_sim.tools.isa_reference import isa_reference_markdown, syntax_example


def words(source, **kw):
    """All words of a one-segment program, as a list of ints."""
    prog = assemble(source, **kw)
    assert len(prog.segments) == 1
    return [int(w) for w in prog.segments[0][1]]


def one(line, **kw):
    (w,) = words(line, **kw)
    return w


def error_of(source, **kw) -> AsmError:
    with pytest.raises(AsmError) as info:
        assemble(source, filename="t.s", **kw)
    return info.value


# ------------------------------------------------------------------------------------------
# Encodings of every operand format, checked against hand-computed words
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, word", [
    ("nop", 0x01000000),                       # none: opcode only
    ("hlt", 0x53000000),
    ("push r5", 0x32500000),                   # a: register in bits 23..20
    ("mov r1, r2", 0x02120000),                # ab
    ("add r1, r2, r3", 0x10120003),            # abc: c in imm[3:0]
    ("sub sp, r14, r13", 0x11FE000D),          # sp is r15
    ("addi r4, sp, -4", 0x204FFFFC),           # abi: two's complement in imm16
    ("andi r1, r2, 0xff", 0x211200FF),         # abu
    ("shli r1, r2, 31", 0x2412001F),           # abs
    ("movi r1, -1", 0x0310FFFF),               # ai: b field stays 0
    ("lui r1, 0x1234", 0x04101234),            # au
    ("ld r1, [r2 + 8]", 0x30120008),           # mem
    ("st r3, [sp - 4]", 0x313FFFFC),
    ("ld r1, [r2]", 0x30120000),
    ("in r1, ticks", 0x54100021),              # in: port 0x21 in imm16
    ("out console, r2", 0x55200010),           # out: port first, register in field a
    ("out 0x20, r2", 0x55200020),
    ("wrcr ptbr, r3", 0x58300001),             # wrcr: control register number in imm16
    ("rdcr r4, tvb", 0x59400003),
    ("rdcr r4, 5", 0x59400005),
])
def test_each_format_encodes_fields_in_the_documented_bits(line, word):
    assert one(line) == word


def test_mnemonics_registers_and_names_are_case_insensitive():
    assert one("ADD R1, R2, SP") == 0x1012000F
    assert one("Rdcr r1, PTBR") == 0x59100001


def test_branch_offset_is_in_words_relative_to_the_next_instruction():
    # beq at 0, target at 0x10: (0x10 - (0 + 4)) / 4 = 3
    w = words("beq r1, r2, target\nnop\nnop\nnop\ntarget: hlt")
    assert w[0] == 0x40120003


def test_backward_branch_to_itself_is_minus_one_word():
    assert one("self: bne r3, r4, self") == 0x4134FFFF


def test_jmp_and_call_use_a_24_bit_word_offset():
    w = words("jmp here\nhere: call 0\n")
    assert w[0] == 0x46000000                      # jump to the next instruction: offset 0
    assert w[1] == 0x48FFFFFE                      # from 4 to 0: (0 - 8) / 4 = -2


def test_labels_work_forward_and_backward():
    prog = assemble("back: nop\n jmp fwd\n jmp back\nfwd: hlt")
    assert prog.symbols == {"back": 0, "fwd": 12}
    assert prog.word_at(4) == 0x46000001           # jmp at 4 to 12: (12 - 8) / 4 = 1
    assert prog.word_at(8) == 0x46FFFFFD           # jmp at 8 to 0: (0 - 12) / 4 = -3


def test_label_may_share_a_line_and_several_labels_may_stack():
    prog = assemble("a: b: nop\nc:\n hlt")
    assert prog.symbols == {"a": 0, "b": 0, "c": 4}


def test_li_is_always_lui_then_ori_even_for_small_values():
    assert words("li r1, 0x12345678") == [0x04101234, 0x22115678]
    assert words("li r2, 5") == [0x04200000, 0x22220005]
    assert words("li r3, -1") == [0x0430FFFF, 0x2233FFFF]


def test_li_with_a_forward_label_gets_the_label_address():
    w = words("li r1, data\nla r2, data\ndata: .word 7")
    assert w[0] == 0x04100000 and w[1] == 0x22110010     # data is at 16
    assert w[2] == 0x04200000 and w[3] == 0x22220010


def test_li_of_a_high_address_splits_upper_and_lower_halves():
    prog = assemble("li r1, far\n.org 0x00ABC000\nfar: hlt")
    assert prog.word_at(0) == 0x041000AB and prog.word_at(4) == 0x2211C000


def test_inc_and_dec_are_addi_by_one():
    assert words("inc r1\ndec r2") == [0x20110001, 0x2022FFFF]


def test_expressions_follow_c_precedence_and_operators():
    assert words(".word 1 + 2 * 3, (1 + 2) * 3, 1 << 4 | 1, ~0, -7 / 2, -7 % 2, 0b101 ^ 0x3") \
        == [7, 9, 17, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF, 6]


def test_character_literals_and_escapes():
    assert words(".word 'a', '\\n', '\\0', '\\''") == [97, 10, 0, 39]


def test_dot_is_the_address_of_the_current_line():
    assert words("nop\n.word ., . + 4") == [0x01000000, 4, 8]
    assert one("beq r1, r2, . + 8") == 0x40120001


def test_memory_operand_offset_can_be_an_expression_with_constants():
    assert one("OFF = 12\nld r1, [r2 + OFF - 4]") == 0x30120008
    assert one("ld r1, [r2 - 2 * 2]") == 0x3012FFFC


# ------------------------------------------------------------------------------------------
# Directives
# ------------------------------------------------------------------------------------------
def test_org_starts_a_new_segment_at_that_address():
    prog = assemble("nop\n.org 0x100\nhlt\nhlt")
    assert [(a, list(w)) for a, w in prog.segments] == [(0, [0x01000000]),
                                                          (0x100, [0x53000000] * 2)]


def test_org_before_any_code_leaves_no_empty_segment():
    prog = assemble(".org 0x1000\nstart: hlt")
    assert [a for a, _ in prog.segments] == [0x1000]
    assert prog.entry == 0x1000


def test_origin_argument_sets_the_first_address():
    prog = assemble("x: nop", origin=0x400)
    assert prog.segments[0][0] == 0x400 and prog.symbols["x"] == 0x400


def test_word_accepts_forward_references_and_negative_values():
    assert words(".word end, -1, 0xFFFFFFFF\nend:") == [12, 0xFFFFFFFF, 0xFFFFFFFF]


def test_string_is_one_word_per_character_then_zero():
    assert words('.string "a\\tb\\"\\\\\\n"') == [97, 9, 98, 34, 92, 10, 0]


def test_string_may_contain_a_semicolon():
    assert words('.string "a;b" ; comment') == [97, 59, 98, 0]


def test_space_reserves_zero_words():
    prog = assemble("nop\n.space 8\nafter: hlt")
    assert list(prog.segments[0][1]) == [0x01000000, 0, 0, 0x53000000]
    assert prog.symbols["after"] == 12


def test_align_pads_with_zero_words_to_the_boundary():
    prog = assemble("nop\n.align 16\nx: hlt\n.align 16\ny: hlt")
    assert prog.symbols == {"x": 16, "y": 32}
    assert prog.word_at(4) == 0 and prog.word_at(12) == 0


def test_equ_and_assignment_define_constants_usable_before_and_after():
    prog = assemble("movi r1, LATE\n.equ EARLY, 3\nLATE = EARLY * 2 + end\nend: hlt")
    assert prog.symbols["EARLY"] == 3 and prog.symbols["LATE"] == 6 + 4
    assert prog.word_at(0) == 0x0310000A


def test_entry_defaults_to_start_then_first_segment_and_can_be_overridden():
    assert assemble("nop\nstart: hlt").entry == 4
    assert assemble(".org 0x40\nnop").entry == 0x40
    assert assemble(".entry main\nnop\nstart: nop\nmain: hlt").entry == 8


def test_lines_map_every_word_to_its_source_line():
    prog = assemble("; header\nnop\n.word 1, 2\n", filename="p.s")
    assert prog.lines == {0: ("p.s", 2), 4: ("p.s", 3), 8: ("p.s", 3)}


def test_listing_shows_address_word_and_source():
    text = assemble("start: movi r1, 10\n  .word 0xdeadbeef").listing()
    assert re.search(r"00000000  0310000a\s+1  start: movi r1, 10", text)
    assert re.search(r"00000004  deadbeef\s+2    .word 0xdeadbeef", text)


# ------------------------------------------------------------------------------------------
# Conditional assembly
# ------------------------------------------------------------------------------------------
PV_SOURCE = """
.if PARAVIRT
    movi r0, 1
.else
    cli
.endif
"""


def test_if_uses_defines_and_treats_an_undefined_name_as_zero():
    assert words(PV_SOURCE, defines={"PARAVIRT": 1}) == [0x03000001]
    assert words(PV_SOURCE) == [0x56000000]
    assert words(PV_SOURCE, defines={"PARAVIRT": 0}) == [0x56000000]


def test_nested_conditionals_only_assemble_the_taken_branches():
    src = """
.ifdef A
  .ifndef B
    .word 1
  .else
    .word 2
    .if B > 1
      .word 3
    .endif
  .endif
.else
  .word 4
.endif
"""
    assert words(src, defines={"A": 1}) == [1]
    assert words(src, defines={"A": 1, "B": 5}) == [2, 3]
    assert words(src, defines={"A": 1, "B": 1}) == [2]
    assert words(src) == [4]


def test_false_branch_is_not_parsed_at_all():
    assert words(".if 0\n  this is ( not assembly \"\n  .macro junk\n  .endm\n.endif\nnop") \
        == [0x01000000]


def test_ifdef_sees_constants_defined_earlier_in_the_source():
    assert words("X = 1\n.ifdef X\n.word 9\n.endif") == [9]


def test_defines_are_usable_in_any_expression():
    assert one("movi r1, SIZE * 2", defines={"SIZE": 21}) == 0x0310002A


# ------------------------------------------------------------------------------------------
# Macros
# ------------------------------------------------------------------------------------------
def test_macro_substitutes_its_arguments():
    src = ".macro pair a, b\n push \\a\n push \\b\n.endm\npair r1, sp"
    assert words(src) == [0x32100000, 0x32F00000]


def test_macro_at_gives_each_expansion_its_own_labels():
    src = """
.macro spin reg
wait\\@: addi \\reg, \\reg, -1
    bne \\reg, r0, wait\\@
.endm
    spin r1
    spin r2
"""
    prog = assemble(src)
    labels = sorted(prog.labels.items(), key=lambda kv: kv[1])
    assert [v for _, v in labels] == [0, 8] and labels[0][0] != labels[1][0]
    assert prog.word_at(4) == 0x4110FFFE and prog.word_at(12) == 0x4120FFFE


def test_macro_argument_may_be_a_whole_memory_operand():
    src = ".macro load r, m\n ld \\r, \\m\n.endm\nload r1, [r2 + (4)]\nload r3, [sp - 8]"
    assert words(src) == [0x30120004, 0x303FFFF8]


def test_macros_can_invoke_other_macros_and_contain_conditionals():
    src = """
.macro one x
    .if \\x
    .word \\x
    .endif
.endm
.macro two x, y
    one \\x
    one \\y
.endm
    two 0, 5
"""
    assert words(src) == [5]


def test_macro_lines_map_to_the_invocation_line():
    prog = assemble(".macro two\n nop\n nop\n.endm\n two", filename="m.s")
    assert prog.lines == {0: ("m.s", 5), 4: ("m.s", 5)}


# ------------------------------------------------------------------------------------------
# Errors: file, line, column and a message that says what was expected
# ------------------------------------------------------------------------------------------
def check_error(source, line, col, *fragments, **kw):
    e = error_of(source, **kw)
    assert (e.filename, e.line, e.col) == ("t.s", line, col), str(e)
    for frag in fragments:
        assert frag in e.message, str(e)
    assert str(e).startswith(f"t.s:{line}:{col}: ")
    return e


def test_error_str_is_file_line_column_message():
    e = error_of("nop\n  add r1, 42, r3")
    assert str(e) == "t.s:2:11: expected a register (r0..r15 or sp), found '42'"


def test_unknown_instruction_suggests_the_nearest_mnemonic():
    check_error("  ad r1, r2, r3", 1, 3, "unknown instruction 'ad'; did you mean 'add'?")


def test_unknown_directive_suggests_the_nearest_directive():
    check_error(".wrod 1", 1, 1, "unknown directive '.wrod'; did you mean '.word'?")


def test_undefined_symbol_suggests_the_nearest_defined_symbol():
    check_error("loop: nop\n  jmp lop", 2, 7, "undefined symbol 'lop'; did you mean 'loop'?")


def test_duplicate_label_names_the_first_definition_line():
    check_error("x: nop\nnop\nx: hlt", 3, 1, "duplicate label 'x': already defined at line 1")


def test_label_named_like_a_register_is_rejected():
    check_error("sp: nop", 1, 1, "'sp' is a register name")


def test_too_few_operands_says_what_the_instruction_takes():
    check_error("add r1, r2", 1, 11, "too few operands: 'add' takes rA, rB, rC")


def test_too_many_operands_points_at_the_extra_operand():
    check_error("push r1, r2", 1, 10, "too many operands: 'push' takes rA")


def test_operands_on_an_instruction_without_operands():
    check_error("hlt r1", 1, 5, "too many operands: 'hlt' takes no operands")


def test_conditional_directive_after_a_label_is_rejected_not_ignored():
    check_error("x: .if 0\nnop\n.endif", 1, 4, "'.if' must be the first thing on its line")


def test_huge_space_is_a_clear_error_not_a_memory_blowup():
    check_error(".space 0x40000000", 1, 1, "program image too large")


def test_code_past_the_top_of_the_address_space_is_an_error():
    check_error(".org 0xFFFFFFFC\nnop\nnop", 3, 1, "past the end of the 32-bit address space")


def test_missing_jump_target_is_too_few_operands():
    check_error("jmp", 1, 4, "too few operands: 'jmp' takes target")


def test_operands_in_the_wrong_order_for_wrcr_name_what_was_expected():
    check_error("wrcr r1, ptbr", 1, 6, "expected a control register (paging, ptbr,",
                "found register 'r1'")
    check_error("out r1, console", 1, 5, "expected an I/O port (console, timer, ticks, blk_sector")


def test_bare_word_hints_that_a_label_needs_a_colon():
    check_error("main\n nop", 1, 1, "unknown instruction 'main'", "end it with ':'")


def test_register_expected_but_expression_found():
    check_error("mov r1, 5", 1, 9, "expected a register (r0..r15 or sp), found '5'")


def test_register_where_an_expression_is_expected():
    check_error("addi r1, r2, r3", 1, 14, "expected an expression, found register 'r3'")


def test_bad_memory_operand():
    check_error("ld r1, r2", 1, 8, "expected a memory operand like [r2 + 8], found 'r2'")
    check_error("ld r1, [r2 + 4", 1, 15, "expected ']' to close the memory operand")


def test_branch_target_out_of_range():
    check_error("beq r1, r2, 0x40000", 1, 13,
                "branch target out of range: 65535 words, the limit is +-32768")


def test_branch_far_backward_out_of_range_reports_the_word_count():
    check_error(".org 160004\nbeq r1, r2, 0", 2, 13,
                "branch target out of range: -40002 words, the limit is +-32768")


def test_jump_target_out_of_range_for_24_bits():
    check_error("jmp 0x4000000", 1, 5, "out of range: 16777215 words, the limit is +-8388608")


def test_branch_target_must_be_word_aligned():
    check_error("beq r1, r2, 6", 1, 13, "branch target 6 is not word aligned")


def test_signed_immediate_out_of_range_suggests_li():
    check_error("addi r1, r2, 0x8000", 1, 14, "does not fit in a signed 16-bit field", "use li")
    check_error("movi r1, 0xFFFF", 1, 10, "(-32768..32767)", "use li", "-1")
    check_error("movi r1, -32769", 1, 10, "signed 16-bit")


def test_unsigned_immediate_out_of_range():
    check_error("ori r1, r2, -1", 1, 13, "unsigned 16-bit field (0..65535)", "use li")
    check_error("lui r1, 0x10000", 1, 9, "unsigned 16-bit")


def test_shift_amount_out_of_range():
    check_error("shli r1, r2, 32", 1, 14, "shift amount must be 0..31, got 32")


def test_word_value_too_big():
    check_error(".word 0x100000000", 1, 7, "does not fit in a 32-bit word")


def test_unterminated_if_points_at_the_if():
    check_error("nop\n  .if 1\nnop", 2, 3, "'.if' is never closed by '.endif'")


def test_else_and_endif_without_if():
    check_error("nop\n.else", 2, 1, "'.else' without a matching '.if'")
    check_error(".endif", 1, 1, "'.endif' without a matching '.if'")


def test_second_else_is_an_error():
    check_error(".if 1\n.else\n.else\n.endif", 3, 1, "second '.else'", "line 1")


def test_unterminated_macro_points_at_the_definition():
    check_error("nop\n.macro m\n nop", 2, 1, "'.macro m' is never closed by '.endm'")


def test_endm_without_macro():
    check_error(".endm", 1, 1, "'.endm' without a matching '.macro'")


def test_macro_argument_count_must_match():
    check_error(".macro m a\n.endm\n  m 1, 2", 3, 3, "macro 'm' takes 1 argument(s) (a), got 2")


def test_unknown_macro_parameter_is_reported_at_definition():
    check_error(".macro m reg\n push \\rg\n.endm", 2, 7, "unknown macro parameter '\\rg'",
                "did you mean 'reg'?")


def test_recursive_macro_stops_with_a_clear_error():
    e = check_error(".macro forever\n forever\n.endm\nforever", 2, 2, "nested more than 32 deep",
                    "does macro 'forever' invoke itself?")
    assert "invoked at line 4" in e.message


def test_error_inside_macro_body_names_the_invocation():
    check_error(".macro m x\n movi r1, \\x\n.endm\n\n m 70000", 2, 11,
                "signed 16-bit", "macro 'm' invoked at line 5")


def test_overlapping_segments_are_an_error():
    check_error("nop\nnop\n.org 4\nhlt", 3, 1, "segments overlap", "address 0x4")


def test_org_needs_a_value_known_when_seen():
    check_error(".org later\nlater: nop", 1, 6, "'.org' needs a value known when it is seen",
                "'later'")


def test_org_must_be_word_aligned():
    check_error(".org 2", 1, 6, "word-aligned")


def test_space_must_be_a_multiple_of_four_and_align_a_power_of_two():
    check_error(".space 6", 1, 8, "multiple of 4")
    check_error(".align 12", 1, 8, "power of two")


def test_if_on_a_name_defined_later_is_an_error():
    check_error(".if X\n.endif\nX = 1", 1, 5, "'X' is used in '.if' before it is defined")


def test_defines_cannot_be_redefined_silently():
    check_error("DEBUG = 1", 1, 1, "already defined by the assembler's defines",
                defines={"DEBUG": 0})


def test_circular_constants_are_an_error():
    e = error_of("A = B\nB = A\nnop")
    assert "circular definition" in e.message


def test_tokenizer_errors_point_at_the_bad_character():
    check_error('.string "abc', 1, 9, "unterminated string")
    check_error("movi r1, 'ab'", 1, 10, "exactly one character")
    check_error("movi r1, 12ab", 1, 10, "invalid number '12ab'")
    check_error("nop ? x", 1, 5, "unexpected character '?'")
    check_error(".string \"\\q\"", 1, 10, "unknown escape '\\q'")


def test_division_by_zero_in_an_expression():
    check_error(".word 1 / 0", 1, 9, "division by zero")


VOCABULARY = ([i.mnemonic.lower() for i in isa.INSTRUCTIONS] + ["li", "inc", "r1", "sp", "x",
              "x:", ",", "[", "]", "+", "-", "*", "/", "(", ")", "0", "4", "0x10", "'a'", '"s"',
              "=", ".", ";", "\\x", "\\@", "ptbr", "console", "<<", "==", "!"]
              + list(DIRECTIVES))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(VOCABULARY), max_size=6).map(" ".join), max_size=6))
def test_random_token_soup_raises_only_clean_asm_errors(lines):
    try:
        assemble("\n".join(lines), filename="soup.s")
    except AsmError as e:
        assert e.filename == "soup.s" and e.line >= 1 and e.col >= 1
        assert "internal assembler error" not in e.message, str(e)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab r1,[]+-*/()0x9:;.'\"\\=~<>@_", max_size=24), max_size=4))
def test_random_characters_raise_only_clean_asm_errors(lines):
    try:
        assemble("\n".join(lines))
    except AsmError as e:
        assert "internal assembler error" not in e.message, str(e)


# ------------------------------------------------------------------------------------------
# Disassembler
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("word, text", [
    (0x10120003, "add r1, r2, r3"),
    (0x30120008, "ld r1, [r2 + 8]"),
    (0x313FFFFC, "st r3, [sp - 4]"),
    (0x204FFFFC, "addi r4, sp, -4"),
    (0x211200FF, "andi r1, r2, 0xff"),
    (0x54100021, "in r1, ticks"),
    (0x58300001, "wrcr ptbr, r3"),
    (0x53000000, "hlt"),
])
def test_disassembles_to_house_style_text(word, text):
    assert disassemble_word(word) == text


def test_branch_shows_absolute_target_and_label_with_pc_and_symbols():
    # beq at 0x50 with offset -5 words: 0x50 + 4 - 20 = 0x40
    w = isa.encode(isa.OP_BEQ, 1, 2, -5)
    assert disassemble_word(w, pc=0x50, symbols={"loop": 0x40}) == "beq r1, r2, 0x40 <loop>"
    assert disassemble_word(w, pc=0x50, symbols={"loop": 0x38}) == "beq r1, r2, 0x40 <loop+0x8>"
    assert disassemble_word(w) == "beq r1, r2, . - 16"


def test_invalid_opcode_disassembles_as_a_word_directive():
    assert disassemble_word(0) == ".word 0x00000000  ; invalid opcode 0x00"
    assert disassemble_word(0xF2000000).startswith(".word 0xf2000000  ; invalid opcode")
    assert disassemble_word(0xF0000003) == "vmcall 3"      # reserved for monitors, but named


def test_non_canonical_word_is_shown_as_data_with_what_the_cpu_does():
    text = disassemble_word(0x10120013)       # add with imm[15:4] != 0: the CPU reads c = 3
    assert text.startswith(".word 0x10120013  ;") and "add r1, r2, r3" in text


def test_disassemble_lists_addresses_and_labels():
    lines = disassemble([0x01000000, 0x46FFFFFF], base=0x100, symbols={"spin": 0x104})
    assert lines == ["00000100:  01000000  nop", "spin:",
                     "00000104:  46ffffff  jmp 0x104 <spin>"]


def test_disassemble_program_covers_every_segment():
    prog = assemble("start: nop\n.org 0x40\nhlt")
    lines = disassemble_program(prog)
    assert "start:" in lines and any(l.startswith("00000040:  53000000  hlt") for l in lines)


def canonical_word(ins, a, b, c, shift, imm16, off24):
    """The canonical encoding of *ins*: the given fields where its format uses them, 0 elsewhere."""
    fmt = ins.fmt
    if fmt == "j":
        return isa.encode_j(ins.opcode, off24)
    if fmt in ("none", "u"):
        a = 0
    if fmt in ("none", "a", "ai", "au", "in", "out", "rdcr", "wrcr", "u"):
        b = 0
    imm = {"none": 0, "a": 0, "ab": 0, "abc": c, "abs": shift}.get(fmt, imm16)
    return isa.encode(ins.opcode, a, b, imm)


@st.composite
def canonical_words(draw):
    ins = draw(st.sampled_from(isa.INSTRUCTIONS))
    reg = st.integers(0, 15)
    return canonical_word(ins, draw(reg), draw(reg), draw(reg), draw(st.integers(0, 31)),
                          draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFFFF)))


pcs = st.integers(0, (1 << 30) - 1).map(lambda x: x * 4)


@settings(max_examples=600, deadline=None)
@given(canonical_words(), pcs)
def test_round_trip_assemble_disassemble_of_canonical_words(word, pc):
    for text in (disassemble_word(word, pc=pc), disassemble_word(word)):
        assert not text.startswith(".word")
        prog = assemble(f".org {pc}\n{text}")
        assert prog.word_at(pc) == word, text


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), pcs)
def test_round_trip_holds_for_every_32_bit_word(word, pc):
    text = disassemble_word(word, pc=pc)
    assert assemble(f".org {pc}\n{text}").word_at(pc) == word, text


@pytest.mark.parametrize("ins", isa.INSTRUCTIONS, ids=lambda i: i.mnemonic.lower())
def test_every_opcode_round_trips_with_extreme_fields(ins):
    for fields in [(15, 14, 13, 31, 0xFFFF, 0xFFFFFF), (1, 2, 3, 1, 0x8000, 0x800000),
                   (0, 0, 0, 0, 0x7FFF, 0x7FFFFF)]:
        w = canonical_word(ins, *fields)
        text = disassemble_word(w, pc=0x1000)
        assert assemble(f".org 0x1000\n{text}").word_at(0x1000) == w, text


# ------------------------------------------------------------------------------------------
# ISA reference
# ------------------------------------------------------------------------------------------
def test_isa_reference_mentions_every_mnemonic_vector_control_register_port_and_syscall():
    md = isa_reference_markdown()
    for ins in isa.INSTRUCTIONS:
        assert f"`{ins.mnemonic.lower()}`" in md
        assert f"0x{ins.opcode:02X}" in md
    for name in isa.VECTOR_NAMES.values():
        assert name in md
    for name in list(isa.CR_NAMES) + list(isa.PORT_NAMES) + [s[1] for s in isa.SYSCALLS]:
        assert f"`{name}`" in md
    assert "| mnemonic | opcode | example | class | sensitivity | cycles | summary |" in md


def test_every_syntax_example_in_the_reference_assembles_to_its_instruction():
    for ins in isa.INSTRUCTIONS:
        prog = assemble(f"loop: function:\n{syntax_example(ins)}")
        assert prog.word_at(0) >> 24 == ins.opcode, ins.mnemonic


# ------------------------------------------------------------------------------------------
# .include: several files, include-once, cycles, errors located in the included file
# ------------------------------------------------------------------------------------------
def write_files(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_include_assembles_the_file_in_place_relative_to_the_including_file(tmp_path):
    write_files(tmp_path, {
        "lib/consts.s": "K = 7\n.include \"more.s\"\n",        # more.s is lib/more.s
        "lib/more.s": "two: movi r2, K\n",
    })
    prog = assemble('.include "lib/consts.s"\nmovi r1, K\n', filename="top.s",
                    base_dir=tmp_path)
    mov = isa.BY_MNEMONIC["MOVI"].opcode
    assert [int(w) for w in prog.segments[0][1]] == [isa.encode(mov, 2, 0, 7),
                                                     isa.encode(mov, 1, 0, 7)]
    assert prog.symbols["two"] == 0 and prog.symbols["K"] == 7
    assert prog.lines[0] == ("lib/more.s", 1) and prog.lines[4] == ("top.s", 2)


def test_a_file_included_twice_is_assembled_once(tmp_path):
    write_files(tmp_path, {"abi.s": "X = 1\n        nop\n", "a.s": '.include "abi.s"\n'})
    # without include-once, X would be defined twice and the nop assembled twice
    prog = assemble('.include "abi.s"\n.include "a.s"\n.include "./abi.s"\n', base_dir=tmp_path)
    assert len(prog.segments[0][1]) == 1


def test_include_inside_if_is_conditional(tmp_path):
    write_files(tmp_path, {"pv.s": "PV_ONLY = 1\n"})
    src = '.if PARAVIRT\n.include "pv.s"\n.endif\n.ifdef PV_ONLY\nnop\n.endif\nhlt\n'
    assert len(words(src, base_dir=tmp_path, defines={"PARAVIRT": 1})) == 2
    assert len(words(src, base_dir=tmp_path)) == 1


def test_a_missing_include_names_the_include_line_and_the_file(tmp_path):
    write_files(tmp_path, {"boot.s": "nop\n"})
    e = error_of('nop\n  .include "bot.s"\n', base_dir=tmp_path)
    assert (e.filename, e.line, e.col) == ("t.s", 2, 12)
    assert "no such file 'bot.s'" in e.message and "did you mean 'boot.s'" in e.message


def test_an_include_cycle_is_an_error_showing_the_whole_chain(tmp_path):
    write_files(tmp_path, {"t.s": '.include "a.s"\n', "a.s": 'nop\n.include "b.s"\n',
                           "b.s": '.include "a.s"\n'})
    e = error_of((tmp_path / "t.s").read_text(), base_dir=tmp_path)
    assert (e.filename, e.line, e.col) == ("b.s", 1, 10)
    assert e.message == ("'.include' cycle: t.s:1:10 includes a.s, a.s:2:10 includes b.s, "
                         "b.s:1:10 includes a.s")
    # a file that includes the top file is a cycle too
    write_files(tmp_path, {"a.s": '.include "t.s"\n'})
    assert "a.s:1:10 includes t.s" in error_of('.include "a.s"\n', base_dir=tmp_path).message


def test_errors_inside_an_included_file_name_that_file(tmp_path):
    write_files(tmp_path, {"inc/bad.s": "nop\n    movi r1, undefined_thing\n",
                           "inc/open.s": ".if 1\nnop\n",
                           "inc/mac.s": ".macro twice R\n    addi \\R, \\R, zz\n.endm\n"})
    e = error_of('.include "inc/bad.s"\n', base_dir=tmp_path)
    assert (e.filename, e.line, e.col) == ("inc/bad.s", 2, 14)
    e = error_of('.include "inc/open.s"\n.endif\n', base_dir=tmp_path)
    assert (e.filename, e.line) == ("inc/open.s", 1) and "never closed" in e.message
    # a macro defined in one file and used in another: the body line, and where it was invoked
    e = error_of('.include "inc/mac.s"\nnop\ntwice r1\n', base_dir=tmp_path)
    assert (e.filename, e.line) == ("inc/mac.s", 2) and "invoked at t.s:3" in e.message


def test_include_needs_a_quoted_name():
    e = error_of(".include abi.s\n")
    assert (e.line, e.col) == (1, 10) and "double quotes" in e.message
