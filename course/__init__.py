"""Instructor tools of the kernel_sim course (not installed with the package).

``python -m course.build`` turns the exercise masters in ``course/masters/`` into the learner
notebooks in ``notebooks/`` and the answer keys in ``course/solutions/``; see ``course/README.md``.
"""
