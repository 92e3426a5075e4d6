"""What an exercise is made of: exercises have parts, parts have randomised cases.

An :class:`Exercise` is one student file ``tutorials/exercises/NN_name.py``. Each
:class:`Part` is one function of that file; its ``cases(rng)`` draws a few random
inputs (random shapes and values, plus the edge cases worth teaching) and computes
the expected result **with the library itself** at grading time — no stored
answers, so a student cannot hard-code them and a teacher need not maintain them.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

from minikfac.exercises.feedback import compare_arrays


@dataclass
class Case:
    """One call of the student's function and what it must give.

    Attributes
    ----------
    label : a short description printed on failure ("N=3, D_in=4, D_out=2, no bias").
    args : the positional arguments (deep-copied before each call, so the
        student may modify them without changing the expected result).
    expected : the library's result.
    compare : ``compare(expected, got) -> None`` (passed) or a message.
    result : optional ``result(args, returned) -> got`` for functions that work
        in place (e.g. an optimizer step that changes the net it was given).
    """

    label: str
    args: tuple
    expected: object
    compare: Callable = compare_arrays
    result: Optional[Callable] = None


@dataclass
class Part:
    """One function the student writes: ``number`` "3.2", its name, its task and its cases."""

    number: str
    function: str
    task: str
    cases: Callable  # rng (numpy Generator) -> list of Case
    hint: str


@dataclass
class Exercise:
    """One student file: its number, file stem, what it teaches and its parts."""

    number: int
    name: str  # "03_softmax_cross_entropy": the file is tutorials/exercises/<name>.py
    title: str
    teaches: str
    tutorial: str  # the tutorial to read first, e.g. "04 Fisher three ways"
    minutes: int  # rough time for a student
    parts: list = field(default_factory=list)
    #: Library modules the student's file may not import (they hold the answer); the grader enforces it.
    forbidden: tuple = ()

    @property
    def filename(self):
        return self.name + ".py"
