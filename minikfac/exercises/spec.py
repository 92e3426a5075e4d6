"""What an exercise is made of: exercises have parts, parts have randomised cases.

An :class:`Exercise` is one student file ``tutorials/exercises/NN_name.py``. Each
:class:`Part` is one function of that file; its ``cases(rng)`` draws a few random
inputs (random shapes and values, plus the edge cases worth teaching) and computes
the expected result **with the library itself** at grading time — no stored
answers, so a student cannot hard-code them and a teacher need not maintain them.

Hints come in tiers (``minikfac check --hints 0|1|2``): tier 1, a *nudge* (what
to think about, which tutorial section to reread; no formula, no code), and
tier 2, the *formula*. A failure message shows the hints up to the tier asked
for; graded mode shows none. A :class:`Case` may also carry known *mistakes*:
wrong answers computed at grading time, which a failing result is compared with
so that the report can name the mistake ("G X A (A where Aᵀ belongs)").
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

from minikfac.exercises.feedback import compare_arrays

#: The hint tiers: 0 none, 1 a nudge, 2 the nudge and the formula.
HINT_TIERS = (0, 1, 2)
#: The tier ``minikfac check`` uses unless told otherwise.
DEFAULT_HINTS = 1


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
    mistakes : optional ``{name: wrong answer}``, each wrong answer computed with
        the library like ``expected`` (same type and shapes). After a failure the
        result is compared with each; a match is reported by its name.
    """

    label: str
    args: tuple
    expected: object
    compare: Callable = compare_arrays
    result: Optional[Callable] = None
    mistakes: dict = field(default_factory=dict)

    def recognise(self, got):
        """The names of the known mistakes that ``got`` matches (a list, usually empty or of one)."""
        names = []
        for name, wrong in self.mistakes.items():
            try:
                if self.compare(wrong, got) is None:
                    names.append(name)
            except Exception:  # noqa: BLE001  (a result the comparison cannot read matches no mistake)
                continue
        return names


@dataclass
class Part:
    """One function the student writes: ``number`` "3.2", its name, its task, its cases and its hints.

    ``task`` says what to compute and the shapes (it is shown when the function is
    missing), never the closed-form answer. ``hints`` is a pair of strings:
    (tier 1, a nudge: what to think about and which tutorial section to read,
    without formula or code; tier 2, the formula or expression).
    """

    number: str
    function: str
    task: str
    cases: Callable  # rng (numpy Generator) -> list of Case
    hints: tuple

    def __post_init__(self):
        if (not isinstance(self.hints, tuple) or len(self.hints) != 2
                or not all(isinstance(h, str) and h.strip() for h in self.hints)):
            raise ValueError(f"Part {self.number}: hints must be a pair of non-empty strings (nudge, formula), "
                             f"got {self.hints!r}")

    def hint_lines(self, tier):
        """The hint lines shown with a failure at ``tier`` (0, 1 or 2): [], ["hint: …"] or both tiers."""
        if tier not in HINT_TIERS:
            raise ValueError(f"hint tier must be one of {HINT_TIERS}, got {tier!r}")
        labels = ("hint", "formula")
        return [f"{label}: {text}" for label, text in zip(labels, self.hints[:tier])]


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
