"""The list of exercises, and finding one by number ("3") or name ("03_softmax_cross_entropy").

To add an exercise: write its checks (a module like :mod:`.checks_layers`, with one
``cases(rng)`` function per part and an :class:`.spec.Exercise`), append it to
``EXERCISES`` here, and put its student file ``tutorials/exercises/NN_name.py`` next
to the others (tutorials/exercises/README.md walks through it).
"""

import os
import shutil
import sys

from minikfac.data import bundled_dir
from minikfac.exercises.checks_curvature import EXACT_FISHER, FACTORS, STEP
from minikfac.exercises.checks_kronecker import DAMPING, KRONECKER
from minikfac.exercises.checks_laplace import KFAC_LAPLACE
from minikfac.exercises.checks_layers import IM2COL, LINEAR, SOFTMAX
from minikfac.exercises.checks_polar import NEWTON_SCHULZ
from minikfac.exercises.checks_refinements import EKFAC_CORRECTION, KFC_FACTORS

EXERCISES = sorted([LINEAR, IM2COL, SOFTMAX, KRONECKER, EXACT_FISHER, FACTORS, DAMPING, STEP, EKFAC_CORRECTION,
                    KFC_FACTORS, NEWTON_SCHULZ, KFAC_LAPLACE],
                   key=lambda exercise: exercise.number)

#: Where the student files live, relative to the repository root (and to the working directory by default).
EXERCISE_DIR = os.path.join("tutorials", "exercises")

#: The package that carries the blank files in a wheel (setup.cfg maps tutorials/exercises/ to it).
PACKAGED = "_exercise_files"


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

    Without ``path`` and without that file, an installed minikfac (not a checkout)
    grades the blank file it carries, and says so on stderr (see :func:`installed_blank_path`).
    Raises :class:`UsageError` if the file does not exist.
    """
    if path is None:
        path = os.path.join(EXERCISE_DIR, exercise.filename)
        blank = None if os.path.isfile(path) else installed_blank_path(exercise)
        if blank is not None:  # an installed minikfac outside a checkout: grade the blank file it carries
            print(f"minikfac check: no {path} under the working directory {os.getcwd()}; grading the blank "
                  f"file installed with minikfac. To work on the exercises, copy them: minikfac check --copy DIR "
                  f"(then run minikfac check {exercise.number} in DIR)", file=sys.stderr)
            return blank
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


def blank_dir():
    """The folder of the blank exercise files (and their README.md) that minikfac finds, or None.

    In a checkout (an editable install): the repository's tutorials/exercises/, the
    files students edit. In an installed wheel: minikfac/_exercise_files/, the same
    files carried as package data (see :func:`minikfac.data.bundled_dir`).
    """
    return bundled_dir(PACKAGED, EXERCISE_DIR)


def installed_blank_path(exercise):
    """The blank file of ``exercise`` installed with minikfac (a str), or None in a checkout.

    Only a wheel's copy counts: in a checkout the files of tutorials/exercises/ are
    the student's own work, graded from the repository root as before.
    """
    folder = blank_dir()
    if folder is None or folder.name != PACKAGED:
        return None
    path = folder / exercise.filename
    return str(path) if path.is_file() else None


def copy_blank_files(directory):
    """Copy every blank exercise file and the README to ``directory``/tutorials/exercises/.

    Afterwards ``minikfac check N`` run in ``directory`` grades the copies, as in a
    checkout. Returns the list of paths written. Never overwrites: if one of the
    files exists already, raises :class:`UsageError` naming it, and copies nothing.
    """
    source = blank_dir()
    if source is None:
        raise UsageError("the blank exercise files are missing from this installation of minikfac")
    names = [e.filename for e in EXERCISES] + ["README.md"]
    target = os.path.join(os.fspath(directory), EXERCISE_DIR)
    if os.path.exists(target) and not os.path.isdir(target):
        raise UsageError(f"{target} exists and is not a directory")
    existing = [name for name in names if os.path.exists(os.path.join(target, name))]
    if existing:
        raise UsageError(f"{target} already holds {', '.join(existing)}; nothing copied (choose another "
                         f"directory, or move those files away)")
    os.makedirs(target, exist_ok=True)
    written = []
    for name in names:
        written.append(shutil.copyfile(source / name, os.path.join(target, name)))
    return written


def run_copy(directory):
    """What ``minikfac check --copy DIR`` does: copy the blank files, print where; returns the exit status (0 or 2)."""
    try:
        written = copy_blank_files(directory)
    except (UsageError, OSError) as err:
        print(f"minikfac check: {err}", file=sys.stderr)
        return 2
    target = os.path.dirname(written[0])
    print(f"Copied {len(written)} files to {target}{os.sep}: the {len(EXERCISES)} exercises and README.md.")
    print(f"Edit them there, and grade one in {directory}: cd {directory} && minikfac check NUMBER "
          f"(minikfac check --list shows the numbers)")
    return 0


def listing():
    """A table of the exercises, for ``minikfac check --list``."""
    lines = [f"{'#':>2}  {'file':<28} {'min':>3}  {'read first':<33} title"]
    for e in EXERCISES:
        lines.append(f"{e.number:>2}  {e.filename:<28} {e.minutes:>3}  {e.tutorial:<33} {e.title}")
        lines.append(f"{'':<4}{'':<28} {'':>3}  parts: " + ", ".join(f"{p.number} {p.function}" for p in e.parts))
    lines.append("")
    lines.append(f"Student files are in {EXERCISE_DIR}/. Grade one with: minikfac check NUMBER [FILE] [--seed S]")
    if not os.path.isdir(EXERCISE_DIR) and installed_blank_path(EXERCISES[0]) is not None:
        lines.append(f"There is no {EXERCISE_DIR}/ here: minikfac check NUMBER grades the blank files installed in "
                     f"{blank_dir()}; to work on them, copy them: minikfac check --copy DIR")
    return "\n".join(lines)
