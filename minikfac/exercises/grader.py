"""Grading a student file: load it by path, run every part on random cases, report.

The grader never compares with stored answers: each part draws fresh random
inputs from ``seed`` and asks the library for the expected result, so the same
seed reproduces a run exactly and a new seed gives new numbers. A part passes
when all its cases pass; the first failing case is reported with the worst
entry and a hint. Exit status: 0 all parts passed, 1 some failed (or the file
could not be imported), 2 a usage error (see :func:`run`).
"""

import copy
import importlib.machinery
import importlib.util
import os
import re
import secrets
import sys
import textwrap
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np

from minikfac import backend
from minikfac.exercises import registry

PASSED, FAILED, NOT_IMPLEMENTED = "passed", "FAILED", "not implemented yet"
WIDTH = 110  # the report's lines are wrapped to this width


@dataclass
class PartResult:
    """The outcome of one part: ``status`` (PASSED, FAILED or NOT_IMPLEMENTED), cases passed, message lines."""

    part: object
    status: str
    cases_passed: int
    cases: int
    lines: list = field(default_factory=list)


@dataclass
class Report:
    """The outcome of grading one file; ``text()`` is what the command prints."""

    exercise: object
    path: str
    seed: int
    parts: list = field(default_factory=list)
    import_error: str = None

    @property
    def passed(self):
        return self.import_error is None and all(r.status == PASSED for r in self.parts)

    @property
    def exit_code(self):
        return 0 if self.passed else 1

    def text(self):
        e = self.exercise
        lines = [f"Exercise {e.number}: {e.title}",
                 f"file {self.path}, seed {self.seed} (read first: tutorial {e.tutorial})", ""]
        if self.import_error is not None:
            lines += ["  The file could not be imported, so no part was checked:"]
            lines += ["    " + line for line in self.import_error.splitlines()]
        for result in self.parts:
            title = f"  {result.part.number} {result.part.function} "
            status = result.status
            if status == PASSED:
                status += f" ({result.cases} cases)"
            elif status == FAILED and result.cases:
                status += f" on case {result.cases_passed + 1} of {result.cases}"
            lines.append(f"{title:.<36} {status}")
            for line in result.lines:
                indent = "      " + " " * (len(line) - len(line.lstrip()))
                lines += textwrap.wrap(line.strip(), WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                                       break_long_words=False, break_on_hyphens=False) or [""]
        passed = sum(r.status == PASSED for r in self.parts)
        lines.append("")
        if self.import_error is None:
            verdict = "all passed" if self.passed else "not all passed"
            lines.append(f"{passed} of {len(e.parts)} parts passed ({verdict}).")
        lines.append(f"Reproduce this run: minikfac check {e.number} {self.path} --seed {self.seed}")
        return "\n".join(lines)


def _student_line(error, path):
    """' (line L in function: code)' for the deepest frame of ``error`` inside the student's file, or ''."""
    target = os.path.realpath(path)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.realpath(f.filename) == target]
    if not frames:
        return ""
    frame = frames[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f" (line {frame.lineno} in {frame.name}{code})"


def load_student(path):
    """Import the file at ``path`` as a module: (module, None), or (None, a message) if it fails."""
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    name = f"minikfac_student_{stem}"
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # some code (dataclasses, pickle) looks its module up there
    try:
        loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(name, None)
        lines = [f"{path}, line {err.lineno}: {type(err).__name__}: {err.msg}"]
        if err.text:
            lines.append("    " + err.text.rstrip("\n"))
            if err.offset:
                lines.append("    " + " " * (err.offset - 1) + "^")
        return None, "\n".join(lines)
    except (Exception, SystemExit) as err:
        sys.modules.pop(name, None)
        return None, f"importing {path} raised {type(err).__name__}: {err}{_student_line(err, path)}"
    return module, None


def _run_case(function, case):
    """Call the student's function on a copy of the case's arguments; return what it produced."""
    args = copy.deepcopy(case.args)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow warnings: the NaN/inf check explains them
        returned = function(*args)
    return case.result(args, returned) if case.result is not None else returned


def grade_part(module, part, rng, path):
    """Run ``part``'s cases (drawn with ``rng``) on the student's function; return a :class:`PartResult`."""
    function = getattr(module, part.function, None)
    if not callable(function):
        return PartResult(part, FAILED, 0, 0, [f"no function {part.function}(...) in {path}; the exercise asks "
                                               f"for: {part.task}"])
    cases = part.cases(rng)
    for index, case in enumerate(cases):
        where = f"case {index + 1} of {len(cases)} ({case.label})"
        try:
            got = _run_case(function, case)
        except NotImplementedError as err:
            return PartResult(part, NOT_IMPLEMENTED, index, len(cases), [str(err) or part.task])
        except Exception as err:
            line = _student_line(err, path)
            return PartResult(part, FAILED, index, len(cases),
                              [f"{where}: raised {type(err).__name__}: {err}{line}", f"hint: {part.hint}"])
        try:
            message = case.compare(case.expected, got)
        except Exception as err:  # a result of a type the comparison cannot read
            message = f"could not compare your result ({type(got).__name__}): {type(err).__name__}: {err}"
        if message:
            lines = [f"{where}:"] + ["  " + line for line in message.splitlines()] + [f"hint: {part.hint}"]
            return PartResult(part, FAILED, index, len(cases), lines)
    return PartResult(part, PASSED, len(cases), len(cases))


def grade(exercise, path, seed=None):
    """Grade the file at ``path`` for ``exercise`` (an :class:`.spec.Exercise`); return a :class:`Report`.

    ``seed`` (an int >= 0) fixes every random case; None draws a fresh one (printed in the report).
    Runs on NumPy in float64 and restores the previous backend and default dtype.
    """
    seed = secrets.randbelow(10**6) if seed is None else int(seed)
    report = Report(exercise, path, seed)
    with backend.using():  # whatever the student's code sets is undone on leaving
        module, report.import_error = load_student(path)
        if module is None:
            return report
        for index, part in enumerate(exercise.parts):
            with backend.using("numpy", "float64"):  # again for every part, whatever the student's code set
                rng = np.random.default_rng([seed, exercise.number, index])
                report.parts.append(grade_part(module, part, rng, path))
    return report


def run(exercise=None, student_file=None, seed=None, list_exercises=False):
    """What ``minikfac check`` does; prints, and returns the exit status (0, 1 or 2).

    ``exercise`` : a number or name (see :func:`.registry.find`); ``student_file``:
    a path, by default tutorials/exercises/NN_name.py under the working directory;
    ``seed``: see :func:`grade`; ``list_exercises``: print the list and return 0.
    """
    if list_exercises:
        print(registry.listing())
        return 0
    try:
        if exercise is None:
            raise registry.UsageError("which exercise? Give its number or name, e.g. 'minikfac check 3' "
                                      "(minikfac check --list shows them all)")
        found = registry.find(exercise)
        path = registry.student_path(found, student_file)
    except registry.UsageError as err:
        print(f"minikfac check: {err}", file=sys.stderr)
        return 2
    report = grade(found, path, seed)
    print(report.text())
    return report.exit_code
