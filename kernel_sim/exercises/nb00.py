"""Exercises of notebook 00 (start here).

* 00.1 -- how many instructions did the hello program retire?  The checker runs :data:`HELLO`
  on a fresh machine and compares with the simulator's own count.
* 00.2 -- change the program so that it prints your initial.  The checker assembles and runs the
  learner's source text and looks at the console.
"""
from __future__ import annotations

from ..asm import AsmError
from ..runner import run_source
from . import exercise

#: The first program of the course: print a string, one character per word, then stop.
HELLO = """\
; hello.s -- print a message on the console, then stop
start:  li   r1, message     ; r1 = address of the first character
loop:   ld   r2, [r1]        ; r2 = the character at r1 (one character per word)
        beq  r2, r0, done    ; a 0 word marks the end of the string (r0 is still 0)
        out  console, r2     ; send the character to the console port
        addi r1, r1, 4       ; next word
        jmp  loop
done:   hlt                  ; stop the machine
message: .string "Hello, world!\\n"
"""


def hello_instructions() -> int:
    """Instructions the hello program retires on a fresh machine (the answer to 00.1)."""
    return run_source(HELLO, "hello.s").instructions


@exercise("00.1", "How many instructions did the hello program retire?",
          hints=["Look for 'instructions:' in the report the run printed, or use "
                 "result.instructions.",
                 "The answer is a whole number: answer = result.instructions works too."])
def _check_instructions(answer):
    expected = hello_instructions()
    if isinstance(answer, bool) or not isinstance(answer, int):
        return False, f"expected a whole number, got {type(answer).__name__} {answer!r}"
    if answer != expected:
        return False, f"{answer} is not what the simulator counted for the hello program"
    return True, (f"the hello program retires {expected} instructions (checked by running it "
                  f"on a fresh machine)")


@exercise("00.2", "Change the hello program so that it prints your initial",
          hints=["Copy HELLO and change the text between the quotes of .string.",
                 "Keep the program otherwise the same: it must still end with hlt.",
                 "Exactly one letter, optionally followed by a newline: .string \"K\\n\""])
def _check_initial(answer):
    if not isinstance(answer, str):
        return False, f"expected the program's source text (a string), got {type(answer).__name__}"
    try:
        result = run_source(answer, "my_program.s", count=100_000)
    except AsmError as exc:
        return False, f"the program does not assemble: {exc}"
    if result.stop != "halt":
        return False, f"the program must stop with hlt; it stopped with: {result.stop_description}"
    text = result.console.rstrip("\n")
    if len(text) != 1 or not text.isalpha():
        return False, f"the console shows {result.console!r}; expected exactly one letter"
    return True, f"your program ran and printed {text!r}, then halted"
