"""Comparing a student's result with the library's, and saying *how* it differs.

Every comparator takes ``(expected, got)`` and returns ``None`` when they agree
or a message for the student. Beyond the worst entry (expected against got),
the messages name the mistakes that come up again and again: a transposed
result, a result off by a constant factor (a missing 1/N, a flipped sign),
the right numbers in the wrong order (row-major reshape instead of
column-stacking vec), NaN or inf from an overflowing exp, one column too many
or too few (the bias column of W̄ = [W | b]), a float32 result (or one with
float32's rounding error) where float64 is needed. Known mistakes that are
specific to one exercise ("G X A where G X Aᵀ belongs") are wrong answers a
:class:`.spec.Case` carries; the grader compares a failing result with them.

Tolerance: entries agree when |got − expected| <= ATOL + RTOL·max|expected|,
in float64; different but correct orders of summation differ by ~1e-15.
"""

import numpy as np

from minikfac import backend

RTOL = 1e-8
ATOL = 1e-12


def as_host_array(got):
    """``got`` as a float64 NumPy array, or None if it is not array-like."""
    if backend.is_array(got):
        got = backend.to_numpy(got)
    try:
        array = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array


#: Low-precision float types, with their unit roundoff: a result of that dtype cannot meet RTOL.
LOW_PRECISION = {"float32": 2.0 ** -24, "float16": 2.0 ** -11}
#: A float64 result whose relative error is at most this, with no other diagnosis, is told it is float32-sized.
FLOAT32_SIZED = 1e-5


def dtype_name(got):
    """The dtype of ``got`` as a string ("float32"), or None for lists, numbers and other types."""
    dtype = getattr(got, "dtype", None)
    return None if dtype is None else str(dtype)


def _close(a, b, scale):
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= ATOL + RTOL * scale))


def _format_shape(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _shape_message(what, expected, got, shape_names):
    names = f" = {shape_names}" if shape_names else ""
    message = f"{what}: shape {_format_shape(got.shape)}, expected {_format_shape(expected.shape)}{names}"
    if got.ndim == 2 and got.shape == expected.shape[::-1]:
        if _close(got.T, expected, np.max(np.abs(expected), initial=0.0)):
            return message + "; it is the transpose of the expected result"
        return message + "; the two axes are swapped (a transposed product or reshape?)"
    if got.ndim != expected.ndim:
        message += f"; {got.ndim} axes instead of {expected.ndim}"
        if got.size == expected.size:
            message += " (the right number of entries: check the reshape)"
        return message
    if got.size == expected.size:
        return message + "; the right number of entries in another shape (check the reshape)"
    differing = [axis for axis in range(got.ndim) if got.shape[axis] != expected.shape[axis]]
    steps = {got.shape[axis] - expected.shape[axis] for axis in differing}
    if steps in ({1}, {-1}):
        axes = " and ".join(map(str, differing))
        message += f"; one entry {'longer' if steps == {1} else 'shorter'} along axis {axes}"
        message += " (the bias column of W̄ = [W | b], or the 1 appended to ā = [a; 1]?)"
    return message


def _scale_diagnosis(expected, got, scale, known):
    """'your result is c times the expected one' when got ≈ c·expected, naming c if it is a known size."""
    norm = float(np.vdot(expected, expected))
    if norm == 0:
        return None
    c = float(np.vdot(expected, got)) / norm
    if abs(c - 1) < 1e-6 or not _close(got, c * expected, max(abs(c), 1.0) * scale):
        return None
    if abs(c + 1) < 1e-6:
        return "your result is minus the expected one (the sign is flipped)"
    for name, value in (known or {}).items():
        for factor, text in ((value, f"{name} = {value}"), (1 / value, f"1/{name}"),
                             (value * value, f"{name}² = {value * value}"), (1 / (value * value), f"1/{name}²"),
                             (value / max(value - 1, 1e-300), f"{name}/({name} − 1)")):
            if value > 1 and abs(c - factor) <= 1e-6 * abs(factor):
                return f"your result is {c:.6g} times the expected one ({text}: a missing or extra normalisation?)"
    if got.size == 1:  # any wrong number is "c times" the right one: say so only for a known size
        return None
    return f"your result is {c:.6g} times the expected one (a missing or extra constant factor?)"


def _two_numbers(expected, got):
    """expected and got printed with enough digits to tell them apart ("2.18573" and "2.185730159")."""
    for digits in (6, 10, 17):
        first, second = f"{expected:.{digits}g}", f"{got:.{digits}g}"
        if first != second:
            break
    return first, second


def _precision_message(what, expected, got, scale, dtype):
    """The message for a result that is wrong only by float32-sized rounding, or None if it is not that."""
    error = float(np.max(np.abs(got - expected)))
    relative = error / scale if scale > 0 else error
    tolerance = ATOL + RTOL * scale
    if dtype in LOW_PRECISION:
        if relative > 1e4 * LOW_PRECISION[dtype]:  # more than rounding: a real mistake, said by the usual message
            return None
        return (f"{what}: your result is {dtype} ({dtype} keeps about {int(-np.log10(LOW_PRECISION[dtype]))} "
                f"significant digits; its error {error:.2g} is over the tolerance {tolerance:.2g}); compute in "
                f"float64 (NumPy's default; look for an astype or a dtype={dtype} in your code)")
    if relative > FLOAT32_SIZED:
        return None
    representable = bool(np.all(got.astype(np.float32).astype(np.float64) == got))
    if representable:
        return (f"{what}: every entry of your result is a float32 number, with float32's error (relative "
                f"{relative:.2g}, tolerance {tolerance:.2g}): part of the computation ran in float32; compute in "
                f"float64")
    return None


def _value_message(what, expected, got, scale, known):
    error = np.abs(got - expected)
    tolerance = ATOL + RTOL * scale
    worst = np.unravel_index(np.argmax(error), error.shape) if error.ndim else ()
    where = f" at index {tuple(int(i) for i in worst)}" if worst != () else ""
    want, have = _two_numbers(expected[worst], got[worst])
    lines = [f"{what}: wrong values; worst entry{where}: expected {want}, got {have} "
             f"(error {error[worst]:.2g}, tolerance {tolerance:.2g})"]
    if got.ndim >= 2 and got.shape[-1] == got.shape[-2] and _close(np.swapaxes(got, -1, -2), expected, scale):
        lines.append("it is the transpose of the expected result")
    else:
        diagnosis = _scale_diagnosis(expected, got, scale, known)
        if diagnosis:
            lines.append(diagnosis)
        elif got.ndim == 2 and got.shape[0] > 1 and _close(got - expected, np.broadcast_to(got[0] - expected[0],
                                                                                          got.shape), scale):
            lines.append("every row is off by the same vector (a missing or extra bias?)")
        elif got.size > 1 and _close(np.sort(got, axis=None), np.sort(expected, axis=None), scale):
            lines.append("the entries are right but in the wrong places (the order of vec, a reshape or a transpose?)")
        elif scale > 0 and float(np.max(error)) <= FLOAT32_SIZED * scale:
            lines.append(f"the error is small (relative {float(np.max(error)) / scale:.2g}), the size of float32's "
                         f"rounding: did part of the computation run in float32? Compute in float64")
    return "\n".join(lines)


def compare_arrays(expected, got, what="result", shape_names=None, known=None):
    """None if ``got`` matches ``expected`` (an array or a number), else a message.

    Parameters
    ----------
    expected : NumPy array or number (the library's result).
    got : whatever the student's function returned.
    what : the name used in messages ("dW", "A of layer 1").
    shape_names : the shape in symbols, e.g. "(D_out, D_in)", shown with shape errors.
    known : sizes that scale mistakes are named after, e.g. {"N": 5}.
    """
    expected = np.asarray(expected, dtype=np.float64)
    dtype = dtype_name(got)
    if got is None:
        return f"{what}: got None, expected an array of shape {_format_shape(expected.shape)} (a missing return?)"
    array = as_host_array(got)
    if array is None:
        return f"{what}: got a {type(got).__name__}, expected an array of shape {_format_shape(expected.shape)}"
    if array.shape != expected.shape:
        return _shape_message(what, expected, array, shape_names)
    if not np.all(np.isfinite(array)):
        return (f"{what}: contains NaN or inf (an exp that overflowed? Subtract the maximum first; "
                "a division by zero?)")
    scale = float(np.max(np.abs(expected), initial=0.0))
    if _close(array, expected, scale):
        return None
    message = _precision_message(what, expected, array, scale, dtype)
    if message is None:
        message = _value_message(what, expected, array, scale, known)
        if dtype in LOW_PRECISION:
            message += f"\nyour result is {dtype}: compute in float64 too"
    return message


def arrays(shape_names=None, known=None, what="result"):
    """A comparator for one array, with the shape's symbols and known sizes for the messages."""
    return lambda expected, got: compare_arrays(expected, got, what, shape_names, known)


def sequence(names, shape_names=None, known=None):
    """A comparator for a tuple of results (``expected`` a tuple, an entry None where None is expected).

    names : the names of the entries ("dx", "dW", "db"); shape_names : their shapes in symbols.
    """
    shape_names = shape_names or [None] * len(names)

    def compare(expected, got):
        if not isinstance(got, (tuple, list)) or len(got) != len(names):
            kind = f"a {type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
            return f"expected a tuple of {len(names)} ({', '.join(names)}), got {kind}"
        messages = []
        for name, symbols, want, have in zip(names, shape_names, expected, got):
            if want is None:
                if have is not None:
                    messages.append(f"{name}: expected None (there is no bias), got a {type(have).__name__}")
                continue
            message = compare_arrays(want, have, name, symbols, known)
            if message:
                messages.append(message)
        return "\n".join(messages) or None

    return compare
