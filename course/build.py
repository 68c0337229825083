"""Build the learner notebooks and the answer keys from the exercise masters.

Run it from the repository root::

    python -m course.build              # rewrite notebooks/ and course/solutions/ from the masters
    python -m course.build --check      # change nothing; exit 1 naming every out-of-sync file
    python -m course.build --root DIR   # work on another copy of the tree (the tests do this)

Three kinds of file, one source of truth
----------------------------------------
``course/masters/NN_name.ipynb``
    The master: the notebook *with* its solutions, in nbgrader form.  The only file an author
    edits.  Instructors can give it to ``nbgrader generate_assignment`` unchanged.
``notebooks/NN_name.ipynb``
    What learners open.  Built from the master: solutions removed, hidden tests removed, nbgrader
    metadata removed, outputs stripped, plus one cell that points to the answer key.
``course/solutions/NN_name.md``
    The answer key: for each exercise its id, its task (the Markdown cell before it) and the
    solved cell.

An exercise in a master
-----------------------
An *exercise cell* is a code cell with the nbgrader metadata of an "autograded answer"
(``solution: true``, ``grade: false``, ``grade_id: "ex_NN_k"``).  Its code has three parts::

    answer = ...  # your answer          <- the learner stub: stays in the learner notebook
    ### BEGIN SOLUTION
    answer = 7                           <- the solution: removed for learners
    ### END SOLUTION
    check("02.1", answer)                <- stays

The **learner stub is everything outside the solution region** -- exactly what nbgrader keeps
too, so nbgrader's release and our learner notebook agree (``course/nbgrader_config.py`` sets an
empty ``ClearSolutions.code_stub``; nbgrader then leaves one blank line where the solution was).
In the master the stub line runs first and the solution overwrites it.  The stub must still hold
a ``name = ...`` placeholder and must call ``check("NN.k", ...)`` with the id that matches the
``grade_id``.

A *hidden test cell* may follow an exercise cell directly: nbgrader "autograder tests" metadata
(``grade: true``, ``solution: false``, ``locked: true``, ``points``, ``grade_id: "test_NN_k"``) and
a ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region; outside the region only comments.
It is removed from learner notebooks entirely.

Every code cell that calls ``check("NN.k", ...)`` must be an exercise cell, so no exercise can
reach learners without a solution in the answer key.  Mistakes in a master stop the build with a
message naming the file and the cell; nothing is written then.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

#: The repository root (the parent of this ``course`` folder): the default for ``--root``.
REPO_ROOT = Path(__file__).resolve().parent.parent

MASTERS_DIR = Path("course") / "masters"
NOTEBOOKS_DIR = Path("notebooks")
SOLUTIONS_DIR = Path("course") / "solutions"

# nbgrader's default delimiters; like nbgrader we look for them anywhere in a line.
BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_TESTS, END_TESTS = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_TESTS, END_TESTS)

NAME_RE = re.compile(r"^(\d\d)_[a-z0-9_]+$")
CHECK_RE = re.compile(r"""\bcheck\(\s*["'](\d\d\.\d+)["']""")
PLACEHOLDER_RE = re.compile(r"^\s*[A-Za-z_]\w*\s*=\s*\.\.\.\s*(#.*)?$")
EXERCISE_GRADE_ID_RE = re.compile(r"^ex_(\d\d)_(\d+)$")
TEST_GRADE_ID_RE = re.compile(r"^test_(\d\d)_(\d+)$")

#: The notebook metadata every built notebook gets (editors add more; we drop it).
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}
#: Cell metadata kept in masters, and in learner notebooks.
MASTER_CELL_KEYS = ("nbgrader", "tags")
LEARNER_CELL_KEYS = ("tags",)

#: Id of the cell the build adds to each learner notebook, after its last exercise.
ANSWER_KEY_CELL_ID = "answer-key"

REBUILD = "python -m course.build"


class MasterError(ValueError):
    """A master breaks the conventions; ``problems`` lists every mistake found."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Exercise:
    """One exercise of a master, as the answer key shows it."""

    exercise_id: str  # "02.1"
    grade_id: str  # "ex_02_1"
    title: str  # the task's heading, e.g. "Exercise 02.1 -- count the #GP"
    task: str  # the task text below that heading
    solution: str  # the code between the solution markers
    stub: str  # the learner's cell: the code outside the solution region
    solved: str  # the learner's cell as it looks when solved (placeholders replaced)


@dataclass
class Master:
    """A parsed master and everything built from it."""

    name: str  # "02_protection_rings"
    title: str  # "02 · Protection rings"
    exercises: list[Exercise]
    master: nbformat.NotebookNode  # normalized (outputs stripped)
    learner: nbformat.NotebookNode
    answer_key: str


# ---------------------------------------------------------------------------------------------
# reading a master
# ---------------------------------------------------------------------------------------------
def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _nbgrader(cell) -> dict | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return dict(meta) if meta is not None else None


def _split_region(source: str, begin: str, end: str) -> tuple[list[str], list[str], int, str]:
    """Split ``source`` at one ``begin``/``end`` region.

    Returns ``(outside_lines, inside_lines, index_of_region_in_outside, error)``; ``error`` is
    empty when the cell holds exactly one well-formed region.
    """
    outside: list[str] = []
    inside: list[str] = []
    where, regions, state = -1, 0, "out"
    for line in source.split("\n"):
        if begin in line:
            if state == "in":
                return outside, inside, where, f"a second '{begin}' before '{end}'"
            state, regions, where = "in", regions + 1, len(outside)
            if regions > 1:
                return outside, inside, where, f"more than one '{begin}' region (use one per cell)"
        elif end in line:
            if state != "in":
                return outside, inside, where, f"'{end}' without '{begin}' before it"
            state = "out"
        elif state == "in":
            inside.append(line)
        else:
            outside.append(line)
    if state == "in":
        return outside, inside, where, f"'{begin}' without '{end}'"
    if regions == 0:
        return outside, inside, where, f"no '{begin}' ... '{end}' region"
    return outside, inside, where, ""


def _clean_code(lines: list[str]) -> str:
    """Dedent and drop leading/trailing blank lines."""
    return textwrap.dedent("\n".join(lines)).strip("\n")


def _task_of(cells, index: int) -> tuple[str, str]:
    """``(heading, text)`` of the Markdown cell before code cell ``index``.

    Looks back over code cells (e.g. one that shows the quiz) but not past another exercise.
    The heading is the *last* heading of that cell (a cell may open with "## Exercises"); the text
    is what follows it.
    """
    for cell in reversed(cells[:index]):
        meta = _nbgrader(cell) or {}
        if meta.get("solution") or meta.get("grade"):
            break
        if cell["cell_type"] != "markdown":
            continue
        lines = _source(cell).strip().split("\n")
        heads, fenced = [], False
        for i, line in enumerate(lines):
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced  # a '# comment' inside a code block is no heading
            elif not fenced and re.match(r"^#{1,6}\s", line):
                heads.append(i)
        if not heads:
            return "", "\n".join(lines).strip()
        h = heads[-1]
        heading = re.sub(r"^#{1,6}\s+", "", lines[h]).strip()
        return heading, "\n".join(lines[h + 1:]).strip()
    return "", ""


def _normalized_cell(cell, keys) -> nbformat.NotebookNode:
    out = copy.deepcopy(cell)
    out["metadata"] = {k: copy.deepcopy(cell["metadata"][k])
                       for k in keys if k in cell.get("metadata", {})}
    if out["cell_type"] == "code":
        out["outputs"] = []
        out["execution_count"] = None
    return out


def _notebook(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb["metadata"] = {"kernelspec": dict(KERNELSPEC), "language_info": dict(LANGUAGE_INFO)}
    nb["nbformat"], nb["nbformat_minor"] = 4, 5
    nb["cells"] = cells
    return nb


def render(nb) -> str:
    """The exact text a built notebook is written as (nbformat's layout, final newline)."""
    nbformat.validate(nb)
    return nbformat.writes(nb, version=4) + "\n"


def read_master(path: Path) -> Master:
    """Parse and check one master; raise :class:`MasterError` listing every problem."""
    name = path.stem
    problems: list[str] = []

    def bad(msg: str, i: int | None = None, cell=None) -> None:
        where = f"{MASTERS_DIR / path.name}"
        if i is not None:
            where += f", cell {i + 1}"
            if cell is not None and cell.get("id"):
                where += f" (id {cell['id']})"
        problems.append(f"{where}: {msg}")

    m = NAME_RE.match(name)
    if not m:
        raise MasterError([f"{MASTERS_DIR / path.name}: a master is named NN_name.ipynb "
                           "(two digits, then lower-case letters, digits and _)"])
    number = m.group(1)
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # unreadable JSON, not a notebook, ...
        raise MasterError([f"{MASTERS_DIR / path.name}: cannot read it as a notebook "
                           f"({exc})"]) from None
    if nb.get("nbformat_minor", 0) < 5:
        bad("needs nbformat 4.5 or newer (cells with ids); open and save it in JupyterLab 4")
    cells = nb["cells"]

    ids = [c.get("id") for c in cells]
    if ANSWER_KEY_CELL_ID in ids:
        bad(f"the cell id {ANSWER_KEY_CELL_ID!r} is reserved for the cell the build adds")
    for dup in sorted({i for i in ids if i and ids.count(i) > 1}):
        bad(f"cell id {dup!r} is used twice")

    exercises: list[Exercise] = []
    learner_cells = []
    last_exercise_at = -1  # index in learner_cells after which the answer-key cell goes
    seen_grade_ids: dict[str, int] = {}
    previous_exercise: str | None = None  # grade_id of the exercise cell just before

    for i, cell in enumerate(cells):
        src = _source(cell)
        meta = _nbgrader(cell)
        kind = cell["cell_type"]
        has_marker = any(mk in src for mk in MARKERS)
        follows = previous_exercise
        previous_exercise = None

        if meta is None:
            if has_marker:
                bad("has solution or hidden-test markers but no nbgrader metadata "
                    "(see course/README.md for the metadata of an exercise cell)", i, cell)
            elif kind == "code" and CHECK_RE.search(src):
                bad("calls check(...) but is not an exercise cell: give it nbgrader solution "
                    "metadata and a solution region", i, cell)
            learner_cells.append(_normalized_cell(cell, LEARNER_CELL_KEYS))
            continue

        grade_id = str(meta.get("grade_id", ""))
        if meta.get("schema_version") != 3:
            bad("nbgrader metadata needs schema_version 3", i, cell)
        if grade_id:
            if grade_id in seen_grade_ids:
                bad(f"grade_id {grade_id!r} is also used by cell {seen_grade_ids[grade_id] + 1}",
                    i, cell)
            seen_grade_ids[grade_id] = i
        if meta.get("task"):
            bad("nbgrader task cells are not supported by the build", i, cell)
            continue
        solution, grade = bool(meta.get("solution")), bool(meta.get("grade"))

        if solution and grade:
            bad("manually graded answers (solution and grade both true) are not supported: "
                "make it an exercise cell checked by check(...)", i, cell)
        elif solution:  # ---------------------------------------------------- exercise cell
            if kind != "code":
                bad("only code cells can be exercise cells", i, cell)
                continue
            gm = EXERCISE_GRADE_ID_RE.match(grade_id)
            if not gm or gm.group(1) != number:
                bad(f"an exercise cell's grade_id is 'ex_{number}_<k>' (exercise "
                    f"{number}.<k>); got {grade_id!r}", i, cell)
                continue
            if meta.get("grade") is not False or meta.get("locked") is not False:
                bad("an exercise cell has grade: false and locked: false", i, cell)
            exercise_id = f"{gm.group(1)}.{gm.group(2)}"
            outside, inside, where, err = _split_region(src, BEGIN_SOLUTION, END_SOLUTION)
            if not err and any(mk in src for mk in (BEGIN_TESTS, END_TESTS)):
                err = "hidden tests go into their own cell after the exercise cell"
            if err:
                bad(err, i, cell)
                continue
            stub = _clean_code(outside)
            solution_code = _clean_code(inside)
            called = CHECK_RE.findall(stub)
            if called != [exercise_id]:
                bad(f"the code outside the solution region must call check({exercise_id!r}, "
                    f"...) once (grade_id {grade_id}); it calls {called or 'nothing'}", i, cell)
            placeholders = [ln for ln in outside if PLACEHOLDER_RE.match(ln)]
            if not placeholders:
                bad("the learner stub (the code outside the solution region) needs a "
                    "placeholder line such as `answer = ...  # your answer`", i, cell)
            if not solution_code.strip():
                bad("the solution region is empty", i, cell)
            solved_lines = [ln for ln in outside[:where] if not PLACEHOLDER_RE.match(ln)]
            solved_lines += inside  # at the region's place, so its indentation is right
            solved_lines += [ln for ln in outside[where:] if not PLACEHOLDER_RE.match(ln)]
            heading, task = _task_of(cells, i)
            title = heading or f"Exercise {exercise_id}"
            if exercise_id not in title:
                title = f"{exercise_id} · {title}"
            exercises.append(Exercise(exercise_id, grade_id, title, task, solution_code, stub,
                                      _clean_code(solved_lines)))
            learner = _normalized_cell(cell, LEARNER_CELL_KEYS)
            learner["source"] = stub
            learner_cells.append(learner)
            last_exercise_at = len(learner_cells)
            previous_exercise = grade_id
        elif grade:  # ------------------------------------------------------- hidden tests
            tm = TEST_GRADE_ID_RE.match(grade_id)
            if kind != "code":
                bad("only code cells can hold hidden tests", i, cell)
                continue
            if not tm or follows != f"ex_{tm.group(1)}_{tm.group(2)}":
                bad(f"a hidden-test cell has grade_id 'test_NN_k' and comes right after the "
                    f"exercise cell 'ex_NN_k'; got {grade_id!r} after {follows!r}", i, cell)
            if meta.get("locked") is not True:
                bad("a hidden-test cell is locked: true", i, cell)
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
                bad(f"a hidden-test cell needs points > 0; got {points!r}", i, cell)
            outside, inside, _, err = _split_region(src, BEGIN_TESTS, END_TESTS)
            if not err and any(mk in src for mk in (BEGIN_SOLUTION, END_SOLUTION)):
                err = "a hidden-test cell cannot hold a solution region"
            if not err and not _clean_code(inside).strip():
                err = "the hidden-test region is empty"
            if not err and any(ln.strip() and not ln.strip().startswith("#") for ln in outside):
                err = ("only comments may stand outside the hidden-test region (the cell is "
                       "removed from learner notebooks; put visible checks in check(...))")
            if err:
                bad(err, i, cell)
        else:  # ------------------------------------------------------------- read-only cell
            if has_marker:
                bad("solution or hidden-test markers in a cell that is neither an exercise "
                    "nor a hidden-test cell", i, cell)
            learner_cells.append(_normalized_cell(cell, LEARNER_CELL_KEYS))

    if not exercises and not problems:
        bad("has no exercise cells (every notebook of the course has exercises)")
    first_md = next((c for c in cells if c["cell_type"] == "markdown"), None)
    title_match = re.match(r"^#\s+(.+)$", _source(first_md).strip().split("\n")[0]) \
        if first_md is not None else None
    if not title_match:
        bad("the first cell must be Markdown starting with the notebook's '# title'")
    if problems:
        raise MasterError(problems)

    learner_cells.insert(last_exercise_at, _answer_key_cell(name))
    master_nb = _notebook([_normalized_cell(c, MASTER_CELL_KEYS) for c in cells])
    learner_nb = _notebook(learner_cells)
    title = title_match.group(1).strip()
    return Master(name, title, exercises, master_nb, learner_nb,
                  answer_key_markdown(name, title, exercises))


# ---------------------------------------------------------------------------------------------
# what the build writes
# ---------------------------------------------------------------------------------------------
def _answer_key_cell(name: str) -> nbformat.NotebookNode:
    link = f"../{SOLUTIONS_DIR.as_posix()}/{name}.md"
    text = ("**Answer key -- try first.** Work through each exercise, and its hints, before you\n"
            "look: an exercise teaches most while you are stuck on it. Then compare with the\n"
            f"worked solutions in [{SOLUTIONS_DIR.as_posix()}/{name}.md]({link}).")
    cell = nbformat.v4.new_markdown_cell(text)
    cell["id"] = ANSWER_KEY_CELL_ID
    return cell


def _fence(code: str) -> str:
    longest = max((len(r) for r in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def answer_key_markdown(name: str, title: str, exercises: list[Exercise]) -> str:
    """The text of ``course/solutions/<name>.md``."""
    out = [
        f"# Answer key: {title}",
        "",
        f"<!-- Generated by `{REBUILD}` from {MASTERS_DIR.as_posix()}/{name}.ipynb. "
        "Edit the master, not this file. -->",
        "",
        textwrap.fill(
            f"Worked solutions to the exercises of "
            f"[`{NOTEBOOKS_DIR.as_posix()}/{name}.ipynb`](../../{NOTEBOOKS_DIR.as_posix()}/"
            f"{name}.ipynb). **Try first**: an exercise teaches most while you work on it, and "
            "`check(...)` gives hints when an answer is not right yet. Each solution below is the "
            "exercise cell as it looks when solved; the course's tests run every one of them to "
            "make sure `check(...)` accepts it.",
            width=100, break_long_words=False, break_on_hyphens=False),
    ]
    for ex in exercises:
        fence = _fence(ex.solved)
        out += ["", f"## {ex.title}", ""]
        if ex.task:
            out += [ex.task, ""]
        out += [f"**Solution** (exercise `{ex.exercise_id}`, nbgrader cell `{ex.grade_id}`):", "",
                f"{fence}python", ex.solved, fence]
    return "\n".join(out) + "\n"


def read_masters(root: Path) -> list[Master]:
    """Every master under ``root``; raise :class:`MasterError` listing all problems."""
    folder = root / MASTERS_DIR
    if not folder.is_dir():
        raise MasterError([f"{folder}: no masters folder (is --root the repository root?)"])
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        raise MasterError([f"{folder}: no masters (*.ipynb) found"])
    masters, problems = [], []
    for path in paths:
        try:
            masters.append(read_master(path))
        except MasterError as exc:
            problems += exc.problems
    owners: dict[str, str] = {}
    for m in masters:
        for ex in m.exercises:
            if ex.exercise_id in owners:
                problems.append(f"exercise {ex.exercise_id} appears in {owners[ex.exercise_id]} "
                                f"and in {m.name}")
            owners[ex.exercise_id] = m.name
    if problems:
        raise MasterError(problems)
    return masters


def planned_files(masters: list[Master]) -> dict[Path, str]:
    """Relative path -> exact content, for every file the build owns."""
    files: dict[Path, str] = {}
    for m in masters:
        files[MASTERS_DIR / f"{m.name}.ipynb"] = render(m.master)
        files[NOTEBOOKS_DIR / f"{m.name}.ipynb"] = render(m.learner)
        files[SOLUTIONS_DIR / f"{m.name}.md"] = m.answer_key
    return files


def orphans(root: Path, masters: list[Master]) -> list[Path]:
    """Learner notebooks and answer keys that no master builds."""
    names = {m.name for m in masters}
    found = [p for p in sorted((root / NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))
             if p.stem not in names]
    found += [p for p in sorted((root / SOLUTIONS_DIR).glob("*.md")) if p.stem not in names]
    return [p.relative_to(root) for p in found]


def _difference(rel: Path, current: str, wanted: str) -> str:
    """A one-line reason why ``current`` is not ``wanted``."""
    if rel.suffix != ".ipynb":
        a, b = current.split("\n"), wanted.split("\n")
        pairs = zip(a, b, strict=False)  # the shorter text ends where the longer goes on
        line = next((k for k, (x, y) in enumerate(pairs) if x != y), min(len(a), len(b)))
        return f"differs from its master from line {line + 1} on"
    try:
        a, b = json.loads(current)["cells"], json.loads(wanted)["cells"]
    except (ValueError, KeyError, TypeError):
        return "is not a valid notebook"
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if x.get("id") != y.get("id"):
            return (f"cell {k + 1} has id {x.get('id')!r} where the master builds "
                    f"{y.get('id')!r} (a cell was added, removed or moved)")
        if x != y:
            what = "outputs or metadata" if x.get("source") == y.get("source") else "source"
            return f"cell {k + 1} (id {y.get('id')}) differs in its {what}"
    if len(a) != len(b):
        return f"has {len(a)} cells; the master builds {len(b)}"
    return "differs in notebook metadata or formatting"


def sync_problems(root: Path, files: dict[Path, str]) -> list[str]:
    """Every file whose content on disk is not what the build would write."""
    problems = []
    for rel, wanted in files.items():
        path = root / rel
        if not path.exists():
            problems.append(f"{rel.as_posix()}: missing")
            continue
        current = path.read_text(encoding="utf-8")
        if current != wanted:
            reason = _difference(rel, current, wanted)
            if rel.parts[:2] == MASTERS_DIR.parts:
                reason += " (the build strips outputs and editor metadata from masters)"
            problems.append(f"{rel.as_posix()}: {reason}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 ok, 1 out of sync, 2 bad master)."""
    parser = argparse.ArgumentParser(
        prog="python -m course.build",
        description="Build notebooks/*.ipynb and course/solutions/*.md from course/masters/.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 and name every file that is out of sync")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="repository root holding course/masters and notebooks "
                             "(default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root.resolve()

    try:
        masters = read_masters(root)
    except MasterError as exc:
        print("course.build: cannot build, nothing was written:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    files = planned_files(masters)
    stray = orphans(root, masters)
    stray_msgs = [f"{p.as_posix()}: no master builds it (add course/masters/{p.stem}.ipynb, "
                  "or delete it)" for p in stray]

    if args.check:
        problems = sync_problems(root, files) + stray_msgs
        if problems:
            print(f"course.build --check: {len(problems)} file(s) out of sync:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            print(f"Edit the master in {MASTERS_DIR.as_posix()}/, then run `{REBUILD}`.",
                  file=sys.stderr)
            return 1
        print(f"course.build --check: {len(masters)} master(s), notebooks and answer keys "
              "in sync")
        return 0

    written = 0
    for rel, content in files.items():
        path = root / rel
        if path.exists() and path.read_text(encoding="utf-8") == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8", newline="\n")
        print(f"wrote {rel.as_posix()}")
        written += 1
    print(f"course.build: {len(masters)} master(s), {written} file(s) written")
    for msg in stray_msgs:
        print(f"  {msg}", file=sys.stderr)
    return 1 if stray_msgs else 0


if __name__ == "__main__":
    sys.exit(main())
