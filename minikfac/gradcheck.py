"""Finite-difference gradient checks (used by tests, tutorials and exercises).

Central differences in float64: df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h. The
truncation error is O(h^2) and the rounding error O(eps_machine / h); with
h = 1e-6 both are ~1e-10 relative, far below the 1e-7 we accept (cs231n's
rule of thumb: < 1e-7 is right, > 1e-2 is wrong). float32 is refused: its
rounding error at any useful h is ~1e-3 and would hide real bugs.

Kinks (ReLU at 0, max-pool ties) make finite differences meaningless there;
tests draw inputs away from them.
"""

import numpy as np

from minikfac import backend


def relative_error(analytic, numeric):
    """Norm-wise relative error ``|a - n| / max(|a|, |n|, 1e-300)`` (a float).

    Both arguments are arrays of the same shape (any backend; moved to the host).
    """
    a = backend.to_numpy(analytic).astype(np.float64)
    n = backend.to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"relative_error: analytic has shape {a.shape}, numeric has shape {n.shape}")
    scale = max(np.linalg.norm(a), np.linalg.norm(n), 1e-300)
    return float(np.linalg.norm(a - n) / scale)


def numerical_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar function ``f()`` w.r.t. array ``x``.

    Parameters
    ----------
    f : callable with no arguments returning a scalar (0-d array or float); it
        must read ``x`` (which is perturbed in place and restored).
    x : float64 array of any shape, on any backend.
    h : step size.

    Returns
    -------
    array of ``x``'s shape and backend.
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs a float64 array, got {x.dtype}; call net.astype('float64')")
    xp = backend.get_array_module(x)
    grad = xp.zeros(x.shape, dtype=x.dtype)
    for index in np.ndindex(*x.shape):
        old = x[index].copy()
        x[index] = old + h
        f_plus = float(f())
        x[index] = old - h
        f_minus = float(f())
        x[index] = old
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def numerical_jvp(f, directions, h=1e-6):
    """Central-difference directional derivative of the array-valued ``f()``.

    (f(x + h v) - f(x - h v)) / 2h, moving every x along its v at once: the
    finite-difference counterpart of ``Module.jvp``.

    Parameters
    ----------
    f : callable with no arguments returning an array; it must read the arrays
        being moved (they are perturbed in place and restored exactly).
    directions : list of pairs (x, v): a float64 array (parameter data, input)
        and its direction of the same shape and backend.
    h : step size.

    Returns
    -------
    array of ``f()``'s shape and backend.
    """
    for x, v in directions:
        if x.dtype != np.float64:
            raise TypeError(f"numerical_jvp needs float64 arrays, got {x.dtype}; call net.astype('float64')")
        if tuple(v.shape) != tuple(x.shape):
            raise ValueError(f"numerical_jvp: direction has shape {tuple(v.shape)}, expected {tuple(x.shape)}")
    saved = [x.copy() for x, _ in directions]

    def moved(step):
        for (x, v), old in zip(directions, saved):
            x[...] = old + step * v
        return f().copy()  # f may return a view of a moved array

    try:
        return (moved(h) - moved(-h)) / (2 * h)
    finally:
        for (x, _), old in zip(directions, saved):
            x[...] = old


def check_gradient(analytic, numeric, name="gradient", rtol=1e-7):
    """Raise ``AssertionError`` unless ``analytic`` matches ``numeric`` to ``rtol``.

    The message prints both gradients and the worst entry (its index and both
    values). Returns the relative error (float) when the check passes.
    """
    err = relative_error(analytic, numeric)
    if not err < rtol:
        a = backend.to_numpy(analytic)
        n = backend.to_numpy(numeric)
        worst = np.unravel_index(np.argmax(np.abs(a - n)), a.shape)
        raise AssertionError(
            f"{name}: relative error {err:.3e} >= {rtol:.0e}\n"
            f"worst entry {tuple(int(i) for i in worst)}: analytic {a[worst]!r}, numeric {n[worst]!r}\n"
            f"analytic:\n{a}\nnumeric:\n{n}"
        )
    return err


def check_module(module, x, seed=0, rtol=1e-7):
    """Check ``module.backward`` against finite differences, for its input and parameters.

    Uses the scalar L = sum(r * module(x)) with a fixed random r, whose
    gradient w.r.t. the output is r. ``module`` and ``x`` must be float64.

    Parameters
    ----------
    module : a Module in training mode.
    x : float64 input array of the shape the module expects (e.g. (N, D_in)).

    Returns
    -------
    dict name -> relative error, with ``"input"`` and each parameter's name.
    """
    xp = backend.get_array_module(x)
    out = module(x)
    r = backend.asarray(np.random.default_rng(seed).standard_normal(out.shape), backend=backend.backend_of(x))

    def loss():
        return xp.sum(module(x) * r)

    module.zero_grad()
    module(x)
    dx = module.backward(r, input_grad=True)  # a Sequential skips dL/dX unless asked
    errors = {"input": check_gradient(dx, numerical_gradient(loss, x), "input gradient", rtol)}
    for name, p in module.named_parameters():
        analytic = p.grad.copy()
        errors[name] = check_gradient(analytic, numerical_gradient(loss, p.data), f"gradient of {name}", rtol)
    return errors
