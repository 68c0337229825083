"""The check() helper: right, wrong, hints, unknown ids, odd answers; every master's solutions."""
import pytest
from masters import master_solutions

from kernel_sim.exercises import Verdict, check, exercise, exercises, verdict

#: notebooks whose solution cells run on their own, and their exercises (four each)
MASTER_EXERCISES = {n: [f"{n}.{k}" for k in range(1, 5)]
                    for n in ("03", "04", "05", "06", "07", "08")}


@pytest.mark.parametrize("number", sorted(MASTER_EXERCISES))
def test_every_exercise_of_the_master_has_a_solution_its_checker_accepts(number):
    solutions = master_solutions(number)
    assert sorted(solutions) == MASTER_EXERCISES[number]
    assert sorted(k for k in exercises() if k.startswith(number + ".")) == \
        MASTER_EXERCISES[number]
    for ex_id, answer in solutions.items():
        v = verdict(ex_id, answer)
        assert v.ok, f"{ex_id}: {v.message}"


@exercise("99.1", "test exercise: the answer is 42", hints=["think of Douglas Adams",
                                                           "it is six times seven"])
def _check_991(answer):
    return answer == 42, "compared your answer with the number the machine computed"


def test_right_answer_says_public_checks_passed_not_all_tests():
    v = check("99.1", 42)
    assert v.ok and "public checks passed" in v.text() and "all tests" not in v.text()


def test_wrong_answers_reveal_hints_one_by_one():
    first = check("99.1", 41)
    second = check("99.1", 40)
    third = check("99.1", 39)
    assert not first.ok and first.hint == "think of Douglas Adams"
    assert second.hint == "it is six times seven" and third.hint == second.hint


def test_placeholder_answer_is_not_checked():
    v = check("99.1", ...)
    assert not v.ok and "replace the ..." in v.message


def test_unknown_id_suggests_the_nearest():
    v = check("99.2", 1)
    assert not v.ok and "did you mean '99.1'" in v.message


def test_checker_error_becomes_a_message():
    @exercise("99.3", "raises")
    def _bad(answer):
        raise KeyError("boom")
    v = check("99.3", 1)
    assert not v.ok and "could not check" in v.message


def test_verdict_renders_html_and_text():
    v = Verdict("99.1", True, "fine")
    assert "99.1" in v._repr_html_() and v.text().startswith("✅")


def test_exercises_lists_titles():
    assert exercises()["99.1"].startswith("test exercise")
