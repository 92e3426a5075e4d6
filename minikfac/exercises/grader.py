"""Grading a student file: run it in a process of its own, call every part on random cases, report.

The grader never compares with stored answers: each part draws fresh random
inputs from ``seed`` and asks the library for the expected result, so the same
seed reproduces a run exactly and a new seed gives new numbers. A part passes
when all its cases pass; the first failing case is reported with the worst
entry, the known mistake it matches if any (:meth:`.spec.Case.recognise`) and
the hints of the tier asked for (``hints`` 0, 1 or 2; ``graded`` mode shows
none). Several files graded on the same seed make a :class:`ClassReport`, one
line per file and a count per part. Exit status: 0 all parts passed (of every
file), 1 some failed (or a file could not be imported), 2 a usage error (see :func:`run`).

The grader trusts no student file. The file runs in a separate process
(:mod:`.student_process`), in an empty temporary working folder, with its own
folder importable and the library modules the exercise forbids unimportable;
that process only calls the student's functions and sends back what they
returned, as data. The cases, the expected results and the comparison stay in
the grader's process, so nothing the file does — patching the grader, calling
``sys.exit`` or ``os._exit``, looping — can change a verdict: an exit, a crash
or a part that takes longer than ``time_limit`` seconds is a failed part with
its reason, and the next part runs in a fresh process.
"""

import contextlib
import io
import json
import os
import pickle
import secrets
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np

from minikfac import backend, checkpoint
from minikfac.exercises import registry
from minikfac.exercises.spec import DEFAULT_HINTS, HINT_TIERS

#: Seconds a part may take, all its cases together, before it fails as "timed out" (``--time-limit``).
DEFAULT_TIME_LIMIT = 10.0
#: The script the student's file runs in.
STUDENT_PROCESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "student_process.py")

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
    """The outcome of grading one file; ``text()`` is what the command prints.

    ``hints`` is the tier of the hints in the messages (0, 1 or 2); ``graded``
    is True for a graded run (no hints at all).
    """

    exercise: object
    path: str
    seed: int
    parts: list = field(default_factory=list)
    import_error: str = None
    hints: int = DEFAULT_HINTS
    graded: bool = False

    @property
    def passed(self):
        return self.import_error is None and all(r.status == PASSED for r in self.parts)

    @property
    def exit_code(self):
        return 0 if self.passed else 1

    def to_dict(self):
        """The report as JSON-ready data: exercise, file, seed, graded, hints, passed, import_error, and per
        part its number, function, status, cases passed of cases, and the message lines."""
        return {"exercise": self.exercise.number, "name": self.exercise.name, "file": self.path, "seed": self.seed,
                "graded": self.graded, "hints": self.hints,
                "passed": self.passed, "import_error": self.import_error,
                "parts": [{"part": r.part.number, "function": r.part.function, "status": r.status,
                           "cases_passed": r.cases_passed, "cases": r.cases, "lines": list(r.lines)}
                          for r in self.parts]}

    def options(self):
        """The command-line options that reproduce this run's output: "--seed S", plus --hints or --graded."""
        text = f"--seed {self.seed}"
        if self.graded:
            return text + " --graded"
        return text + ("" if self.hints == DEFAULT_HINTS else f" --hints {self.hints}")

    def text(self):
        e = self.exercise
        mode = ", graded (no hints)" if self.graded else ""
        lines = [f"Exercise {e.number}: {e.title}",
                 f"file {self.path}, seed {self.seed}{mode} (read first: tutorial {e.tutorial})", ""]
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
        if not self.graded and 0 < self.hints < max(HINT_TIERS) and any(r.status == FAILED for r in self.parts):
            lines.append(f"Stuck? --hints {self.hints + 1} adds the formula to each hint.")
        lines.append(f"Reproduce this run: minikfac check {e.number} {self.path} {self.options()}")
        return "\n".join(lines)

    def import_reason(self, limit=100):
        """The first line of :attr:`import_error` (where the error is and what it says; a syntax error's
        later lines only quote the code), without the file's path, shortened to ``limit`` characters."""
        lines = [line.strip() for line in (self.import_error or "").splitlines() if line.strip()]
        reason = lines[0] if lines else "no reason given"
        for prefix in (f"importing {self.path} ", f"{self.path}, "):
            if reason.startswith(prefix):
                reason = reason[len(prefix):]
        return reason if len(reason) <= limit else reason[:limit - 1].rstrip() + "…"

    def summary_line(self, width):
        """One line for a class report: the file, then every part's status (or why the file did not import)."""
        head = f"  {self.path} "
        if self.import_error is not None:
            return f"{head:.<{width}} does not import ({self.import_reason()})"
        statuses = ", ".join(f"{r.part.number} {r.status}" for r in self.parts)
        passed = sum(r.status == PASSED for r in self.parts)
        return f"{head:.<{width}} {statuses}  [{passed} of {len(self.parts)}]"


@dataclass
class ClassReport:
    """The reports of several files graded for one exercise on the same seed (``minikfac check N F1 F2 ...``)."""

    exercise: object
    seed: int
    reports: list = field(default_factory=list)
    hints: int = DEFAULT_HINTS
    graded: bool = False

    @property
    def passed(self):
        return bool(self.reports) and all(r.passed for r in self.reports)

    @property
    def exit_code(self):
        return 0 if self.passed else 1

    def summary(self):
        """{"files", "passed" (files that passed every part), "import_errors", "parts": {"N.M": {"passed",
        "failed", "not implemented"}}} — a file that did not import counts as failed in every part."""
        parts = {}
        for part in self.exercise.parts:
            statuses = [next((r.status for r in report.parts if r.part.number == part.number), FAILED)
                        for report in self.reports]
            parts[part.number] = {"function": part.function, "passed": statuses.count(PASSED),
                                  "failed": statuses.count(FAILED), "not implemented": statuses.count(NOT_IMPLEMENTED)}
        return {"files": len(self.reports), "passed": sum(r.passed for r in self.reports),
                "import_errors": sum(r.import_error is not None for r in self.reports), "parts": parts}

    def to_dict(self):
        """JSON-ready: exercise, name, seed, graded, hints, passed, summary (:meth:`summary`) and files (every
        file's :meth:`Report.to_dict`, in the order graded)."""
        return {"exercise": self.exercise.number, "name": self.exercise.name, "seed": self.seed,
                "graded": self.graded, "hints": self.hints, "passed": self.passed, "summary": self.summary(),
                "files": [report.to_dict() for report in self.reports]}

    def text(self):
        e = self.exercise
        mode = ", graded (no hints)" if self.graded else ""
        lines = [f"Exercise {e.number}: {e.title}", f"{len(self.reports)} files, seed {self.seed}{mode}", ""]
        width = min(60, max(len(r.path) for r in self.reports) + 4)
        lines += [report.summary_line(width) for report in self.reports]
        summary = self.summary()
        lines.append("")
        lines.append("Per part: " + ", ".join(f"{number} {counts['passed']} of {summary['files']} passed"
                                              for number, counts in summary["parts"].items()) + ".")
        lines.append(f"{summary['passed']} of {summary['files']} files passed every part.")
        options = self.reports[0].options() if self.reports else f"--seed {self.seed}"
        lines.append(f"One file's full report: minikfac check {e.number} FILE {options}")
        return "\n".join(lines)


class StudentGone(Exception):
    """The student's process ended (an exit or a crash) or ran past its time: ``reason`` says which."""


class StudentProcess:
    """The student's file imported in a process of its own (:mod:`.student_process`); calls go by pipes.

    ``start()`` returns None, or why the file could not be imported. ``call(...)``
    returns the header and data of one answer, or raises :class:`StudentGone`.
    """

    def __init__(self, path, exercise, allow_library=False):
        self.folder = tempfile.mkdtemp(prefix="minikfac-check-")
        read_fd, write_fd = os.pipe()
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(STUDENT_PROCESS)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH"))
                                                          if p))
        forbidden = "" if allow_library else ",".join(exercise.forbidden)
        self.process = subprocess.Popen(
            [sys.executable, STUDENT_PROCESS, str(write_fd), os.path.abspath(path), str(exercise.number), forbidden],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), cwd=self.folder, env=env)
        os.close(write_fd)
        self.results = read_fd
        self.gone = False  # set when the process ended or ran out of time: no more calls
    def _read_exactly(self, count, deadline):
        data = b""
        while len(data) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.results], [], [], remaining)[0]:
                self.gone = True
                raise StudentGone("timeout")
            chunk = os.read(self.results, count - len(data))
            if not chunk:
                self.gone = True
                raise StudentGone("ended")
            data += chunk
        return data

    def _receive(self, deadline):
        size = struct.unpack(">I", self._read_exactly(4, deadline))[0]
        return self._read_exactly(size, deadline)

    def start(self, time_limit):
        """None once the file is imported, else the reason it could not be."""
        try:
            header = json.loads(self._receive(time.monotonic() + time_limit))
        except StudentGone as gone:
            return (f"importing the file did not finish within {time_limit:g} s" if gone.args[0] == "timeout"
                    else f"importing the file ended the process ({self.exit_status()})")
        return None if header["imported"] else header["error"]

    def call(self, function, args, result, deadline):
        """Call ``function(*args)`` there; (header, the returned object or None). Raises StudentGone."""
        message = pickle.dumps((function, args, result))
        try:
            self.process.stdin.write(struct.pack(">I", len(message)) + message)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            self.gone = True
            raise StudentGone("ended") from None
        header = json.loads(self._receive(deadline))
        if header.get("status") != "returned":
            return header, None
        with np.load(io.BytesIO(self._receive(deadline)), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        return header, checkpoint.decode(header["document"], arrays)

    def exit_status(self):
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "it did not stop"
        return f"exit status {code}" if code >= 0 else f"killed by signal {-code}"

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        with contextlib.suppress(OSError):
            os.close(self.results)
        shutil.rmtree(self.folder, ignore_errors=True)


def grade_part(student, part, cases, time_limit, path, hints=DEFAULT_HINTS):
    """Call ``part``'s function in the student's process on every case; compare here. A :class:`PartResult`.

    ``hints``: the tier of hints added to a failure's lines (0 none, 1 the nudge, 2 and the formula).
    A failing result that matches one of the case's known mistakes says which.
    Raises nothing: an exit, a crash or the time limit fail the part (and leave ``student`` unusable).
    """
    hint_lines = part.hint_lines(hints)
    deadline = time.monotonic() + time_limit
    for index, case in enumerate(cases):
        where = f"case {index + 1} of {len(cases)} ({case.label})"
        try:
            header, got = student.call(part.function, case.args, case.result, deadline)
        except StudentGone as gone:
            if gone.args[0] == "timeout":
                reason = f"did not finish within {time_limit:g} s, the time limit of a part (an endless loop?)"
            else:
                reason = f"ended the grading process ({student.exit_status()}): sys.exit, os._exit or a crash"
            return PartResult(part, FAILED, index, len(cases), [f"{where}: {reason}"] + hint_lines)
        status = header["status"]
        if status == "missing":
            return PartResult(part, FAILED, 0, 0, [f"no function {part.function}(...) in {path}; the exercise asks "
                                                   f"for: {part.task}"])
        if status == "not implemented":
            return PartResult(part, NOT_IMPLEMENTED, index, len(cases), [header["message"] or part.task])
        if status == "raised":
            return PartResult(part, FAILED, index, len(cases),
                              [f"{where}: raised {header['type']}: {header['message']}{header['line']}"]
                              + hint_lines)
        if status == "unreadable":
            return PartResult(part, FAILED, index, len(cases), [f"{where}: {header['message']}"])
        try:
            message = case.compare(case.expected, got)
        except Exception as err:  # a result of a type the comparison cannot read
            message = f"could not compare your result ({type(got).__name__}): {type(err).__name__}: {err}"
        if message:
            lines = [f"{where}:"] + ["  " + line for line in message.splitlines()]
            lines += [f"  your result equals {name}" for name in case.recognise(got)]
            return PartResult(part, FAILED, index, len(cases), lines + hint_lines)
    return PartResult(part, PASSED, len(cases), len(cases))


def check_hints(hints, graded):
    """The hint tier to use: 0 in graded mode, else ``hints`` (0, 1 or 2). Raises ValueError otherwise."""
    if hints not in HINT_TIERS or isinstance(hints, bool):
        raise ValueError(f"hints must be one of {', '.join(map(str, HINT_TIERS))} (0 none, 1 a nudge, 2 the "
                         f"formula), got {hints!r}")
    return 0 if graded else hints


def grade(exercise, path, seed=None, time_limit=DEFAULT_TIME_LIMIT, allow_library=False, hints=DEFAULT_HINTS,
          graded=False):
    """Grade the file at ``path`` for ``exercise`` (an :class:`.spec.Exercise`); return a :class:`Report`.

    ``seed`` (an int >= 0) fixes every random case; None draws a fresh one
    (printed in the report). ``time_limit``: seconds per part. The file runs
    in its own process (module docstring); ``allow_library=True`` lets it
    import the modules the exercise forbids (the test suite grades solutions
    built from the library that way). ``hints``: the tier of hints in the
    messages (0 none, 1 a nudge, 2 the formula too); ``graded=True`` shows no
    hints whatever ``hints`` says, and the report records it. Cases and expected
    results are computed here, on NumPy in float64, leaving the caller's backend
    and dtype as they were.
    """
    seed = secrets.randbelow(10**6) if seed is None else int(seed)
    if not time_limit > 0:
        raise ValueError(f"grade: time_limit must be a number of seconds > 0, got {time_limit!r}")
    tier = check_hints(hints, graded)
    report = Report(exercise, path, seed, hints=tier, graded=bool(graded))
    student = StudentProcess(path, exercise, allow_library)
    try:
        report.import_error = student.start(time_limit)
        if report.import_error is not None:
            return report
        for index, part in enumerate(exercise.parts):
            with backend.using("numpy", "float64"):
                cases = part.cases(np.random.default_rng([seed, exercise.number, index]))
            result = grade_part(student, part, cases, time_limit, path, tier)
            report.parts.append(result)
            if student.gone:
                student.close()  # the next part runs in a fresh process
                student = StudentProcess(path, exercise, allow_library)
                student.start(time_limit)
    finally:
        student.close()
    return report


def grade_class(exercise, paths, seed=None, time_limit=DEFAULT_TIME_LIMIT, allow_library=False,
                hints=DEFAULT_HINTS, graded=False):
    """Grade every file of ``paths`` in turn on the same seed (a fresh one if None): a :class:`ClassReport`.

    The other parameters are :func:`grade`'s; nothing is printed.
    """
    seed = secrets.randbelow(10**6) if seed is None else int(seed)
    tier = check_hints(hints, graded)
    reports = [grade(exercise, path, seed, time_limit, allow_library, hints, graded) for path in paths]
    return ClassReport(exercise, seed, reports, hints=tier, graded=bool(graded))


def _write_json(json_path, data):
    """Write ``data`` to ``json_path``, creating its folder if need be (as the other commands' --json do)."""
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def run(exercise=None, student_file=None, seed=None, list_exercises=False, time_limit=DEFAULT_TIME_LIMIT,
        json_path=None, allow_library=False, hints=DEFAULT_HINTS, graded=False):
    """What ``minikfac check`` does; prints, and returns the exit status (0, 1 or 2).

    ``exercise`` : a number or name (see :func:`.registry.find`); ``student_file``:
    a path, by default tutorials/exercises/NN_name.py under the working directory,
    or a list of paths — one path gives the full report, several a class report
    (:class:`ClassReport`: one line per file, graded on the same seed);
    ``seed``, ``time_limit``, ``allow_library``, ``hints``, ``graded``: see :func:`grade`;
    ``list_exercises``: print the list and return 0; ``json_path``: also write the
    report there as JSON (:meth:`Report.to_dict` for one file, :meth:`ClassReport.to_dict`
    for several), for grading a class by script.
    """
    if list_exercises:
        print(registry.listing())
        return 0
    files = list(student_file) if isinstance(student_file, (list, tuple)) else [student_file]
    try:
        if exercise is None:
            raise registry.UsageError("which exercise? Give its number or name, e.g. 'minikfac check 3' "
                                      "(minikfac check --list shows them all)")
        found = registry.find(exercise)
        paths = [registry.student_path(found, path) for path in (files or [None])]
        tier = check_hints(hints, graded)
    except (registry.UsageError, ValueError) as err:
        print(f"minikfac check: {err}", file=sys.stderr)
        return 2
    if len(paths) > 1:
        report = grade_class(found, paths, seed, time_limit, allow_library, tier, graded)
    else:
        report = grade(found, paths[0], seed, time_limit, allow_library, tier, graded)
    print(report.text())
    if json_path is not None:
        _write_json(json_path, report.to_dict())
    return report.exit_code
