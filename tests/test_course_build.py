"""The exercise masters (course/masters/) and the build that makes the learner notebooks.

What is checked:

1. the committed tree is in sync (``python -m course.build --check`` passes);
2. ``--check`` fails, naming the file, when a master was edited but not rebuilt, when a learner
   notebook was edited by hand, when an answer key is missing or a notebook has no master -- on a
   temporary copy of the tree, never the real one; the build itself is byte-for-byte repeatable
   and refuses broken masters with a message that names the cell;
3. learner notebooks hold no solution text, no solution/hidden-test markers, no hidden tests;
4. every exercise cell of the masters carries valid nbgrader metadata, with unique grade_ids;
5. ``nbgrader generate_assignment`` accepts the masters unchanged (with course/nbgrader_config.py)
   and releases no solution code; ``nbgrader autograde`` awards the hidden tests' points for right
   answers only;
6. executing each master makes every ``check(...)`` pass (so the answer keys are right).

The nbgrader tests skip when nbgrader is not installed, unless KERNEL_SIM_REQUIRE_NBGRADER=1
(``make test`` sets it): then they fail.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `course` is a folder of the repository, not an installed package
    sys.path.insert(0, str(REPO))

from course import build  # noqa: E402
from kernel_sim.exercises import check, exercise, exercises, verdict  # noqa: E402

MASTERS = sorted((REPO / "course" / "masters").glob("*.ipynb"))
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
CHECK_RE = re.compile(r"""\bcheck\(\s*["'](\d\d\.\d+)["']""")


def cells_of(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def src(cell) -> str:
    return "".join(cell["source"])


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def solution_lines(path: Path) -> set[str]:
    """Stripped lines inside the master's solution regions that appear nowhere else in it.

    (A line such as ``from kernel_sim.lessons import rings`` that the master also has outside any solution
    is not solution text.)  Worked out here, independently of course/build.py.
    """
    inside, outside = set(), set()
    for cell in cells_of(path):
        in_region = False
        for line in src(cell).split("\n"):
            if "BEGIN SOLUTION" in line:
                in_region = True
            elif "END SOLUTION" in line:
                in_region = False
            elif line.strip():
                (inside if in_region else outside).add(line.strip())
    return inside - outside


def run_build(*args: str) -> subprocess.CompletedProcess:
    """``python -m course.build ARGS`` from the repository root, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "course.build", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_there_is_a_master_for_each_of_the_first_three_notebooks():
    assert [p.stem for p in MASTERS][:3] == ["00_start_here", "01_history_and_kinds",
                                            "02_protection_rings"]


# ---------------------------------------------------------------------------------------------
# 1. the committed tree is in sync
# ---------------------------------------------------------------------------------------------
def test_committed_notebooks_and_answer_keys_are_in_sync_with_the_masters():
    done = run_build("--check")
    assert done.returncode == 0, (
        "notebooks/ or course/solutions/ are stale: edit course/masters/, then run "
        f"`python -m course.build`.\n{done.stdout}{done.stderr}")


# ---------------------------------------------------------------------------------------------
# 2. --check on a temporary copy of the tree
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of course/masters, course/solutions and notebooks/ (the only inputs and outputs)."""
    for rel in ("course/masters", "course/solutions", "notebooks"):
        shutil.copytree(REPO / rel, tmp_path / rel,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def check_copy(root: Path, capsys) -> tuple[int, str]:
    code = build.main(["--check", "--root", str(root)])
    out = capsys.readouterr()
    return code, out.out + out.err


def edit_cell(path: Path, predicate, change) -> None:
    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if predicate(c))
    change(cell)
    nbformat.write(nb, str(path))


def test_check_passes_on_an_untouched_copy(tree, capsys):
    code, text = check_copy(tree, capsys)
    assert code == 0, text


def test_check_fails_when_a_master_was_edited_but_not_rebuilt(tree, capsys):
    master = tree / "course/masters/02_protection_rings.ipynb"
    edit_cell(master, lambda c: c.cell_type == "markdown" and "# 02" in c.source,
              lambda c: setattr(c, "source", c.source + "\n\nA sentence the author added."))
    before = snapshot(tree)
    code, text = check_copy(tree, capsys)
    assert code == 1
    assert "notebooks/02_protection_rings.ipynb" in text
    assert "01_history_and_kinds" not in text and "00_start_here" not in text
    assert snapshot(tree) == before, "--check must not change any file"

    # rebuilding brings the learner notebook up to date, with the new sentence in it
    assert build.main(["--root", str(tree)]) == 0
    capsys.readouterr()
    rebuilt = (tree / "notebooks/02_protection_rings.ipynb").read_text(encoding="utf-8")
    assert "A sentence the author added." in rebuilt
    assert check_copy(tree, capsys)[0] == 0


def test_check_fails_when_a_solution_changed_and_names_the_answer_key(tree, capsys):
    master = tree / "course/masters/01_history_and_kinds.ipynb"
    edit_cell(master, lambda c: nbgrader_meta(c).get("grade_id") == "ex_01_3",
              lambda c: setattr(c, "source", c.source.replace('answer = "c"', 'answer = "C"')))
    code, text = check_copy(tree, capsys)
    assert code == 1
    assert "course/solutions/01_history_and_kinds.md" in text
    # the learner notebook does not contain the solution, so it is still in sync
    assert "notebooks/01_history_and_kinds.ipynb" not in text


def test_check_fails_when_a_learner_notebook_was_edited_by_hand(tree, capsys):
    learner = tree / "notebooks/00_start_here.ipynb"
    edit_cell(learner, lambda c: c.cell_type == "code" and "00.1" in c.source,
              lambda c: setattr(c, "source", c.source.replace("answer = ...", "answer = 75")))
    code, text = check_copy(tree, capsys)
    assert code == 1 and "notebooks/00_start_here.ipynb" in text
    assert "course/masters" not in text.split("Edit the master")[0]


def test_check_names_every_out_of_sync_file(tree, capsys):
    for name in ("00_start_here", "02_protection_rings"):
        path = tree / f"notebooks/{name}.ipynb"
        path.write_text(path.read_text(encoding="utf-8").replace("Summary", "Sumary"),
                        encoding="utf-8")
    (tree / "course/solutions/01_history_and_kinds.md").unlink()
    (tree / "notebooks/07_not_a_master.ipynb").write_text(
        (tree / "notebooks/00_start_here.ipynb").read_text(encoding="utf-8"), encoding="utf-8")
    code, text = check_copy(tree, capsys)
    assert code == 1
    for named in ("notebooks/00_start_here.ipynb", "notebooks/02_protection_rings.ipynb",
                  "course/solutions/01_history_and_kinds.md: missing",
                  "notebooks/07_not_a_master.ipynb: no master"):
        assert named in text, named


def test_a_master_saved_with_outputs_is_out_of_sync_until_the_build_cleans_it(tree, capsys):
    master = tree / "course/masters/00_start_here.ipynb"
    nb = nbformat.read(str(master), as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.execution_count = 3
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="warming up\n")]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, str(master))
    code, text = check_copy(tree, capsys)
    assert code == 1 and "course/masters/00_start_here.ipynb" in text
    # outputs never reach learners: the learner notebook is still what it was
    assert "notebooks/00_start_here.ipynb" not in text
    assert build.main(["--root", str(tree)]) == 0
    capsys.readouterr()
    assert (tree / "course/masters/00_start_here.ipynb").read_bytes() == \
        (REPO / "course/masters/00_start_here.ipynb").read_bytes()


def test_rebuilding_is_byte_identical(tree, capsys):
    for rel in ("notebooks", "course/solutions"):
        shutil.rmtree(tree / rel)
    assert build.main(["--root", str(tree)]) == 0
    first = snapshot(tree)
    assert build.main(["--root", str(tree)]) == 0
    assert "0 file(s) written" in capsys.readouterr().out
    assert snapshot(tree) == first
    for rel, data in first.items():  # and equal to what is committed
        assert data == (REPO / rel).read_bytes(), rel


@pytest.mark.parametrize("change, message", [
    (lambda s: s.replace("### END SOLUTION\n", ""), "'BEGIN SOLUTION' without 'END SOLUTION'"),
    (lambda s: s.replace("answer = ...  # your answer\n", ""), "placeholder line"),
    (lambda s: s.replace('check("02.1"', 'check("02.2"'), "must call check('02.1'"),
])
def test_a_broken_exercise_cell_is_refused_naming_file_and_cell(tree, capsys, change, message):
    master = tree / "course/masters/02_protection_rings.ipynb"
    edit_cell(master, lambda c: nbgrader_meta(c).get("grade_id") == "ex_02_1",
              lambda c: setattr(c, "source", change(c.source)))
    cells = cells_of(master)
    k = next(i for i, c in enumerate(cells) if nbgrader_meta(c).get("grade_id") == "ex_02_1")
    before = snapshot(tree)
    code = build.main(["--root", str(tree)])
    err = capsys.readouterr().err
    assert code == 2
    where = f"02_protection_rings.ipynb, cell {k + 1} (id {cells[k]['id']})"
    assert where in err and message in err, err
    assert snapshot(tree) == before, "nothing may be written when a master is broken"


def test_an_exercise_without_a_solution_is_refused(tree, capsys):
    master = tree / "course/masters/00_start_here.ipynb"
    edit_cell(master, lambda c: nbgrader_meta(c).get("grade_id") == "ex_00_2",
              lambda c: c.metadata.pop("nbgrader"))
    assert build.main(["--check", "--root", str(tree)]) == 2
    assert "no nbgrader metadata" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 3. learner notebooks give nothing away
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.name)
def test_learner_notebook_contains_no_solution_and_no_hidden_tests(master):
    learner = REPO / "notebooks" / master.name
    cells = cells_of(learner)
    text = learner.read_text(encoding="utf-8")
    for marker in MARKERS:
        assert marker not in text, marker
    assert not any("nbgrader" in c.get("metadata", {}) for c in cells)
    assert "verdict(" not in text, "a hidden-test cell reached the learner notebook"
    learner_lines = {line.strip() for c in cells for line in src(c).split("\n")}
    secret = solution_lines(master)
    assert secret, "the master should have solutions"
    assert not secret & learner_lines, sorted(secret & learner_lines)


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.name)
def test_learner_exercise_cells_are_the_master_cells_without_the_solution(master):
    learner = {c["id"]: src(c) for c in cells_of(REPO / "notebooks" / master.name)}
    for cell in cells_of(master):
        if nbgrader_meta(cell).get("solution"):
            text = src(cell)
            expected = re.sub(r"[^\n]*BEGIN SOLUTION.*?END SOLUTION[^\n]*\n", "", text,
                              flags=re.S)
            assert learner[cell["id"]] == expected
            assert re.search(r"^\w+ = \.\.\.", expected, re.M), "a learner stub to fill in"
        elif nbgrader_meta(cell).get("grade"):
            assert cell["id"] not in learner
        else:
            assert learner[cell["id"]] == src(cell)


# ---------------------------------------------------------------------------------------------
# 4. nbgrader metadata of the masters
# ---------------------------------------------------------------------------------------------
def test_every_master_exercise_cell_has_valid_nbgrader_metadata_and_unique_grade_ids():
    grade_ids: list[str] = []
    known = exercises()
    for master in MASTERS:
        number = master.name[:2]
        cells = cells_of(master)
        exercise_cells = 0
        for k, cell in enumerate(cells):
            meta = nbgrader_meta(cell)
            text = src(cell)
            has_region = "BEGIN SOLUTION" in text or "BEGIN HIDDEN TESTS" in text
            assert bool(meta) == has_region, f"{master.name} cell {k}: markers need metadata"
            if not meta:
                if cell["cell_type"] == "code":
                    assert not CHECK_RE.search(text), f"{master.name} cell {k}: check(), no answer"
                continue
            assert meta["schema_version"] == 3 and meta["task"] is False
            assert re.fullmatch(r"[a-zA-Z0-9_\-]+", meta["grade_id"])
            grade_ids.append(meta["grade_id"])
            if meta["solution"]:
                exercise_cells += 1
                assert meta["grade"] is False and meta["locked"] is False
                assert cell["cell_type"] == "code"
                assert text.count("BEGIN SOLUTION") == text.count("END SOLUTION") == 1
                (ex_id,) = CHECK_RE.findall(text)
                assert ex_id in known, f"{ex_id} has no checker"
                assert ex_id.startswith(number + ".")
                assert meta["grade_id"] == "ex_" + ex_id.replace(".", "_")
            else:  # a hidden-test cell, right after its exercise
                assert meta["grade"] is True and meta["locked"] is True
                assert meta["points"] > 0
                assert "BEGIN HIDDEN TESTS" in text and "END HIDDEN TESTS" in text
                previous = nbgrader_meta(cells[k - 1])
                assert meta["grade_id"] == previous["grade_id"].replace("ex_", "test_", 1)
        assert exercise_cells >= 2, master.name
    assert len(grade_ids) == len(set(grade_ids)), "grade_ids must be unique"


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.name)
def test_master_code_cells_stay_short_solutions_included(master):
    for cell in cells_of(master):
        if cell["cell_type"] == "code":
            assert src(cell).count("\n") < 15, src(cell)[:200]


# ---------------------------------------------------------------------------------------------
# verdict(): the quiet form of check() the hidden tests use
# ---------------------------------------------------------------------------------------------
@exercise("98.1", "test exercise for verdict: the answer is 6", hints=["first hint", "second"])
def _check_981(answer):
    return answer == 6, "compared with six"


def test_verdict_judges_like_check_without_hints_or_counting_attempts():
    assert verdict("98.1", 6).ok and "public checks passed" in verdict("98.1", 6).text()
    wrong = verdict("98.1", 5)
    assert not wrong.ok and wrong.hint == "" and wrong.message == "compared with six"
    for _ in range(3):
        verdict("98.1", 4)
    # had verdict() counted attempts, check() would now show the second hint
    assert check("98.1", 5).hint == "first hint"
    assert check("98.1", 5).hint == "second"


def test_verdict_of_a_missing_answer_or_unknown_id_is_not_ok():
    assert not verdict("98.1", ...).ok and "replace the ..." in verdict("98.1", ...).message
    assert not verdict("98.1").ok
    assert "did you mean '98.1'" in verdict("98.2", 6).message


# ---------------------------------------------------------------------------------------------
# 5. nbgrader accepts the masters
# ---------------------------------------------------------------------------------------------
def _nbgrader_or_skip() -> None:
    if importlib.util.find_spec("nbgrader") is not None:
        return
    reason = "nbgrader is not installed (pip install -e '.[test]' installs it)"
    if os.environ.get("KERNEL_SIM_REQUIRE_NBGRADER", "").strip() not in ("", "0", "false", "no"):
        pytest.fail(f"KERNEL_SIM_REQUIRE_NBGRADER=1, but {reason}")
    pytest.skip(reason)


def nbgrader(course: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m nbgrader ARGS`` in the course directory, isolated from user settings."""
    env = dict(os.environ)
    # nbgrader runs the `alembic` command: it lives next to this interpreter
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["JUPYTER_CONFIG_DIR"] = str(course / ".jupyter")
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def nbgrader_course(tmp_path_factory) -> Path:
    """A temporary nbgrader course with the masters as assignment 'kernel_sim', released."""
    _nbgrader_or_skip()
    course = tmp_path_factory.mktemp("nbgrader_course")
    (course / ".jupyter").mkdir()
    source = course / "source" / "kernel_sim"
    source.mkdir(parents=True)
    for master in MASTERS:
        shutil.copy(master, source / master.name)
    config = (REPO / "course" / "nbgrader_config.py").read_text(encoding="utf-8")
    config += (f"\nc.CourseDirectory.root = {str(course)!r}\n"
               f"c.CourseDirectory.db_url = {'sqlite:///' + str(course / 'gradebook.db')!r}\n")
    (course / "nbgrader_config.py").write_text(config, encoding="utf-8")
    done = nbgrader(course, "generate_assignment", "kernel_sim", "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    return course


@pytest.mark.slow
@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.name)
def test_nbgrader_releases_the_master_without_solutions(nbgrader_course, master):
    released = nbgrader_course / "release" / "kernel_sim" / master.name
    assert released.is_file()
    cells = cells_of(released)
    text = "\n".join(src(c) for c in cells)
    for marker in MARKERS:
        assert marker not in text
    released_lines = {line.strip() for line in text.split("\n")}
    secret = solution_lines(master)
    assert secret and not secret & released_lines, sorted(secret & released_lines)
    # nbgrader's release and our learner notebook give learners the same exercise cells
    # (nbgrader leaves one blank line where the solution was)
    ours = {c["id"]: src(c) for c in cells_of(REPO / "notebooks" / master.name)}
    for cell in cells:
        if nbgrader_meta(cell).get("solution"):
            theirs = "\n".join(ln for ln in src(cell).split("\n") if ln.strip())
            assert theirs == ours[cell["id"]]
            assert "NotImplementedError" not in src(cell)


@pytest.mark.slow
def test_nbgrader_autograde_gives_points_for_right_answers_only(nbgrader_course):
    """A learner answers 00.1 right and 00.2 wrong: the hidden tests give 1 of 2 points."""
    released = nbgrader_course / "release" / "kernel_sim" / "00_start_here.ipynb"
    nb = nbformat.read(str(released), as_version=4)
    answers = {"ex_00_1": "answer = 75",
               "ex_00_2": 'my_program = HELLO.replace("Hello, world!", "KS")'}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = re.sub(r"^\w+ = \.\.\..*$", answers[grade_id], cell.source, flags=re.M)
    submitted = nbgrader_course / "submitted" / "learner" / "kernel_sim"
    submitted.mkdir(parents=True)
    nbformat.write(nb, str(submitted / released.name))
    done = nbgrader(nbgrader_course, "autograde", "kernel_sim", "--notebook", "00_start_here",
                    "--force", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{nbgrader_course / 'gradebook.db'}") as gradebook:
        result = gradebook.find_submission_notebook("00_start_here", "kernel_sim", "learner")
        scores = {g.name: g.score for g in result.grades}
    assert scores == {"test_00_1": 1.0, "test_00_2": 0.0}


# ---------------------------------------------------------------------------------------------
# 6. the masters' solutions pass their checks
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=MASTERS, ids=lambda p: p.name)
def executed_master(request):
    """The master run top to bottom on a fresh kernel (hidden tests included)."""
    from nbclient import NotebookClient
    nb = nbformat.read(str(request.param), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    return request.param, nb


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_every_master_solution_passes_its_check(executed_master):
    path, nb = executed_master
    checked = []
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            (ex_id,) = CHECK_RE.findall(cell.source)
            shown = output_text(cell)
            assert f"{ex_id}: public checks passed" in shown, (path.name, ex_id, shown)
            checked.append(ex_id)
        assert "not yet" not in output_text(cell)
    assert len(checked) >= 2
