"""Classroom exercises and their grader (``minikfac check``).

The student files are ``tutorials/exercises/NN_name.py`` (a wheel carries them
as package data; ``minikfac check --copy DIR`` copies them out); their functions
raise ``NotImplementedError("Exercise N.M: ...")`` until written. This package holds
the list of exercises (:mod:`.registry`), each exercise's randomised checks
(``checks_*.py``: the expected results, and the wrong answers of known mistakes,
come from the library itself, never from stored answers) and the grader
(:mod:`.grader`)::

    from minikfac import exercises
    status = exercises.run("3")                       # grade tutorials/exercises/03_...py
    report = exercises.grade(exercises.find("3"), "my_solution.py", seed=1, hints=2)
    print(report.text()); report.passed
    klass = exercises.grade_class(exercises.find("3"), ["a.py", "b.py"], seed=1, graded=True)
    klass.to_dict()["summary"]

Hints come in tiers (0 none, 1 a nudge, 2 the formula; graded mode shows none).
tutorials/exercises/README.md is the teacher's guide; model solutions for
teachers are in teaching/solutions/ at the repository root.
"""

from minikfac.exercises.grader import (DEFAULT_TIME_LIMIT, NOT_IMPLEMENTED, PASSED, ClassReport, Report, grade,
                                       grade_class, run)
from minikfac.exercises.registry import EXERCISE_DIR, EXERCISES, UsageError, find, listing, student_path
from minikfac.exercises.spec import DEFAULT_HINTS, HINT_TIERS

__all__ = ["EXERCISES", "EXERCISE_DIR", "NOT_IMPLEMENTED", "PASSED", "ClassReport", "Report", "UsageError", "find",
           "grade", "grade_class", "listing", "run", "student_path", "DEFAULT_TIME_LIMIT", "DEFAULT_HINTS",
           "HINT_TIERS"]
