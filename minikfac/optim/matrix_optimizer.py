"""What Muon, Shampoo and SOAP share: a parameter's matrix view, and state arrays of other shapes.

These optimizers treat each parameter with at least two axes as a matrix
W (m, n): a Linear weight (D_out, D_in) as it is, a Conv2d weight
(C_out, C_in, KH, KW) through its matrix view (C_out, C_in·KH·KW) (rows:
output channels; the SOAP reference's "channels first" and Muon's usual
reshape). Vectors (biases) have no matrix view and take each optimizer's
documented fallback.

Their state holds arrays that are not of the parameter's shape (Shampoo's
L (m, m) and R (n, n), SOAP's eigenbases), so the base class's check on
loading (every array of its parameter's shape) is replaced here by one that
asks the optimizer which names and shapes it keeps for each parameter
(:meth:`MatrixOptimizer.state_shapes`).
"""

import math
import numbers

import numpy as np

from minikfac import backend
from minikfac.optim.optimizer import Optimizer, _real


def matrix_shape(shape):
    """(m, n) = (shape[0], prod(shape[1:])) for a shape with >= 2 axes; None for a scalar or vector."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        return None
    return shape[0], math.prod(shape[1:])


def triple(owner, name, value):
    """Rule: three finite real numbers (Newton–Schulz's coefficients (a, b, c))."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"{owner}: {name} must be three numbers (a, b, c), got {value!r}")
    return tuple(_real(owner, f"{name}[{i}]", v) for i, v in enumerate(value))


class MatrixOptimizer(Optimizer):
    """Base class of the optimizers whose per-parameter state has arrays of several shapes.

    A subclass says, for parameter ``i`` and hyper-parameters ``hyper``, which
    state names it keeps and their shapes (:meth:`state_shapes`: name ->
    shape tuple, or None for a Python number); :meth:`load_state_dict` checks
    every saved entry against that, all before anything changes.
    """

    def matrix_shape(self, i):
        """(m, n), the matrix view of parameter ``i``, or None for a vector or scalar."""
        return matrix_shape(self.params[i].shape)

    def state_shapes(self, i, hyper):
        """name -> shape (tuple) or None (a number) of parameter ``i``'s state under ``hyper``."""
        raise NotImplementedError(f"{type(self).__name__}.state_shapes")

    def _check_hyper(self, hyper):
        """The base class's checks, and: settings that change which state a parameter keeps (Shampoo's
        ``grafting``, SOAP's ``rotate``, ``max_preconditioner_dim``) cannot change once there is state."""
        hyper = super()._check_hyper(hyper)
        for key, entry in getattr(self, "state", {}).items():  # no state yet while __init__ runs
            expected = self.state_shapes(key, hyper)
            if set(entry) != set(expected):
                owner = type(self).__name__
                changed = ", ".join(f"{name}={hyper[name]!r}" for name in hyper if name in self.hyper
                                    and hyper[name] != self.hyper[name]) or "these settings"
                raise ValueError(f"{owner}: {changed} would change the state kept for params[{key}] (it holds "
                                 f"{sorted(entry)}, the new settings need {sorted(expected)}); make a new "
                                 f"{owner} for them")
        return hyper

    def load_state_dict(self, state_dict):
        """Restore from :meth:`state_dict`'s output; everything is checked before anything changes.

        Besides the base class's checks: each parameter's saved entry must have
        exactly the names this optimizer keeps for it under the saved
        hyper-parameters, each array the shape it expects (Shampoo's L is
        (m, m), not the parameter's shape).
        """
        # The saved settings are checked against the saved state, not against the state they replace.
        current, self.state = self.state, {}
        try:
            self._check_saved_state(state_dict)
            return super().load_state_dict(state_dict)
        except BaseException:
            self.state = current
            raise

    def _check_saved_state(self, state_dict):
        """ValueError/TypeError unless each saved entry has the names and shapes of :meth:`state_shapes`."""
        owner = type(self).__name__
        if isinstance(state_dict, dict) and state_dict.get("type") == owner \
                and set(state_dict.get("hyper", {})) == set(self.hyper) \
                and isinstance(state_dict.get("state"), dict):  # else the base class says what is wrong
            hyper = self._check_hyper(dict(state_dict["hyper"]))
            for key, entry in state_dict["state"].items():
                if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < len(self.params):
                    raise ValueError(f"{owner}.load_state_dict: state key {key!r} is not a parameter index in "
                                     f"[0, {len(self.params)})")
                if not isinstance(entry, dict):
                    continue  # the base class names it
                expected = self.state_shapes(key, hyper)
                if set(entry) != set(expected):
                    raise ValueError(f"{owner}.load_state_dict: state[{key}] has the entries {sorted(entry)}, "
                                     f"expected {sorted(expected)}")
                for name, shape in expected.items():
                    value = entry[name]
                    if shape is None:
                        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                            raise ValueError(f"{owner}.load_state_dict: state[{key}][{name!r}] must be an "
                                             f"integer >= 0, got {value!r}")
                    elif not backend.is_array(value):
                        raise TypeError(f"{owner}.load_state_dict: state[{key}][{name!r}] is a "
                                        f"{type(value).__name__}, expected an array")
                    elif tuple(value.shape) != tuple(shape):
                        raise ValueError(f"{owner}.load_state_dict: state[{key}][{name!r}] has shape "
                                         f"{tuple(value.shape)}, expected {tuple(shape)}")

    def _load_state_entry(self, key, name, value):
        """Numbers are kept; arrays (shapes checked by :meth:`load_state_dict`) are copied to the parameter's
        backend and dtype."""
        if not backend.is_array(value):
            return int(value)
        p = self.params[key]
        # Copy first: the optimizer updates its state in place and must not write into the checkpoint.
        host = np.array(backend.to_numpy(value), dtype=p.data.dtype, copy=True)
        return backend.asarray(host, backend=backend.backend_of(p.data))


def all_finite(*arrays):
    """True if every entry of ``arrays`` is finite (one number read back from the device).

    Shampoo and SOAP ask before an eigendecomposition, which LAPACK refuses on
    NaN: a diverged run then carries NaN on, as Adam's does, rather than
    stopping with a LinAlgError.
    """
    xp = backend.get_array_module(*arrays)
    return bool(xp.isfinite(sum(xp.sum(a) for a in arrays)))
