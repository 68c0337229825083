"""nbgrader settings for teaching the kernel_sim course (nbgrader 0.9 or newer).

Copy this file into the root of your nbgrader course directory (next to ``source/``) as
``nbgrader_config.py``, put copies of the masters from ``course/masters/`` into
``source/<assignment>/``, and run ``nbgrader generate_assignment <assignment>``.
``course/README.md`` walks through it; the course's tests run exactly that with this file.

The grading environment needs kernel_sim itself (``pip install -e .`` of the course, or
``pip install kernel_sim``): the checkers behind ``check(...)`` and the hidden tests are part of
the package.
"""

c = get_config()  # noqa: F821 -- provided by traitlets when nbgrader loads this file

# --- release: the same runnable stubs as notebooks/ -------------------------------------------
# In a master the learner's stub line (``answer = ...  # your answer``) stands *outside* the
# ``### BEGIN SOLUTION`` region, so nbgrader only has to delete the solution.  With nbgrader's
# default stub the released cell would end in ``raise NotImplementedError()`` and the learner's
# ``check(...)`` would never run; an empty stub leaves a runnable cell that is the learner
# notebook's cell plus one blank line.
c.ClearSolutions.code_stub = {"python": ""}

# --- autograding: room for the JIT warm-up -----------------------------------------------------
# The first code cell (``course.setup()``) compiles the simulator with Numba when its cache is
# cold: tens of seconds on a small machine, more than nbgrader's default of 30 s per cell.
# Warm the cache once on the grading machine (``python -m kernel_sim warmup``) and keep
# NUMBA_CACHE_DIR the same for every grading run; the generous timeout covers a cold start.
c.Execute.timeout = 600
c.ExecutePreprocessor.timeout = 600
