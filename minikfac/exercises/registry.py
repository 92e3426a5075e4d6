"""The list of exercises, and finding one by number ("3") or name ("03_softmax_cross_entropy").

To add an exercise: write its checks (a module like :mod:`.checks_layers`, with one
``cases(rng)`` function per part and an :class:`.spec.Exercise`), append it to
``EXERCISES`` here, and put its student file ``tutorials/exercises/NN_name.py`` next
to the others (tutorials/exercises/README.md walks through it).
"""

import os

from minikfac.exercises.checks_curvature import EXACT_FISHER, FACTORS, STEP
from minikfac.exercises.checks_kronecker import DAMPING, KRONECKER
from minikfac.exercises.checks_layers import IM2COL, LINEAR, SOFTMAX

EXERCISES = sorted([LINEAR, IM2COL, SOFTMAX, KRONECKER, EXACT_FISHER, FACTORS, DAMPING, STEP],
                   key=lambda exercise: exercise.number)

#: Where the student files live, relative to the repository root (and to the working directory by default).
EXERCISE_DIR = os.path.join("tutorials", "exercises")


class UsageError(ValueError):
    """A wrong exercise name or a missing file: the command exits with status 2."""


def find(name):
    """The :class:`.spec.Exercise` called ``name``: "3", "03", "03_softmax_cross_entropy",
    "softmax_cross_entropy" or "03_softmax_cross_entropy.py". Raises :class:`UsageError`."""
    text = os.path.basename(str(name).strip())
    if text.endswith(".py"):
        text = text[:-3]
    for exercise in EXERCISES:
        if text.isdigit() and int(text) == exercise.number:
            return exercise
        if text in (exercise.name, exercise.name[3:]):
            return exercise
    numbers = ", ".join(str(e.number) for e in EXERCISES)
    raise UsageError(f"unknown exercise {name!r}; expected a number ({numbers}) or a name like "
                     f"{EXERCISES[2].name!r} (minikfac check --list shows them all)")


def student_path(exercise, path=None):
    """The student file to grade: ``path``, or tutorials/exercises/NN_name.py under the working directory.

    Raises :class:`UsageError` if the file does not exist.
    """
    if path is None:
        path = os.path.join(EXERCISE_DIR, exercise.filename)
        if not os.path.isfile(path):
            raise UsageError(f"no file {path} under the working directory {os.getcwd()}; run the command from "
                             f"the repository root, or give the path of your file: "
                             f"minikfac check {exercise.number} PATH/TO/{exercise.filename}")
    elif os.path.isdir(path):
        raise UsageError(f"{path} is a directory; expected the path of a .py file like {exercise.filename}")
    elif not os.path.isfile(path):
        raise UsageError(f"no file {path}; expected the path of your solution of exercise {exercise.number} "
                         f"(a .py file like {exercise.filename})")
    return path


def listing():
    """A table of the exercises, for ``minikfac check --list``."""
    lines = [f"{'#':>2}  {'file':<28} {'min':>3}  {'read first':<33} title"]
    for e in EXERCISES:
        lines.append(f"{e.number:>2}  {e.filename:<28} {e.minutes:>3}  {e.tutorial:<33} {e.title}")
        lines.append(f"{'':<4}{'':<28} {'':>3}  parts: " + ", ".join(f"{p.number} {p.function}" for p in e.parts))
    lines.append("")
    lines.append(f"Student files are in {EXERCISE_DIR}/. Grade one with: minikfac check NUMBER [FILE] [--seed S]")
    return "\n".join(lines)
