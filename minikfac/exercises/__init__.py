"""Classroom exercises and their grader (``minikfac check``).

The student files are ``tutorials/exercises/NN_name.py`` (a wheel carries them
as package data; ``minikfac check --copy DIR`` copies them out); their functions
raise ``NotImplementedError("Exercise N.M: ...")`` until written. This package holds
the list of exercises (:mod:`.registry`), each exercise's randomised checks
(``checks_*.py``: the expected results come from the library itself, never from
stored answers) and the grader (:mod:`.grader`)::

    from minikfac import exercises
    status = exercises.run("3")                       # grade tutorials/exercises/03_...py
    report = exercises.grade(exercises.find("3"), "my_solution.py", seed=1)
    print(report.text()); report.passed

tutorials/exercises/README.md is the teacher's guide.
"""

from minikfac.exercises.grader import DEFAULT_TIME_LIMIT, NOT_IMPLEMENTED, PASSED, Report, grade, run
from minikfac.exercises.registry import EXERCISE_DIR, EXERCISES, UsageError, find, listing, student_path

__all__ = ["EXERCISES", "EXERCISE_DIR", "NOT_IMPLEMENTED", "PASSED", "Report", "UsageError", "find", "grade",
           "listing", "run", "student_path", "DEFAULT_TIME_LIMIT"]
