"""The optimizer base class: parameters, hyper-parameters, state, checkpoints.

An optimizer owns a list of :class:`~minikfac.nn.Parameter` objects and
updates their ``data`` *in place* from their ``grad`` when ``step()`` is
called, as in PyTorch::

    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    for X, y in batches:
        opt.zero_grad()
        loss = loss_fn(net(X), y)
        net.backward(loss_fn.backward())
        opt.step()

The base class is deliberately small: construction and validation,
``zero_grad``, ``state_dict``/``load_state_dict`` and the ``_grads()``
iterator. Everything about *how* a parameter moves lives in the subclasses
(``SGD``, ``Adam``, and K-FAC, which also needs the net's layers and keeps
per-layer state; it overrides :meth:`Optimizer._load_state_entry` for that).

State
-----
``self.state`` maps a key (here: the parameter's position in ``self.params``)
to a dict ``{name: value}``. Array values live on the parameter's backend with
the parameter's dtype; small counters may be Python numbers. ``state_dict()``
copies everything to the host so that a checkpoint pickles and loads on any
backend; ``load_state_dict()`` moves it back where each parameter lives.
"""

import math
import numbers
from typing import ClassVar

import numpy as np

from minikfac import backend
from minikfac.nn.module import Parameter


# --------------------------------------------------------------------------- #
# Hyper-parameter rules. Each takes (owner, name, value), returns the value as
# a plain Python object (so that step() never syncs with a device to read it),
# and raises an error naming the argument and the value it got.
# --------------------------------------------------------------------------- #
def _real(owner, name, value):
    # bool is a numbers.Real in Python; lr=True is a bug, not a learning rate.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    return value


def positive(owner, name, value):
    """Rule: a finite real number > 0 (learning rates, eps)."""
    value = _real(owner, name, value)
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return value


def nonnegative(owner, name, value):
    """Rule: a finite real number >= 0 (weight decay)."""
    value = _real(owner, name, value)
    if not value >= 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    return value


def unit_interval(owner, name, value):
    """Rule: a real number in [0, 1) (momentum, decay rates of running averages)."""
    value = _real(owner, name, value)
    if not 0 <= value < 1:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")
    return value


def unit_interval_pair(owner, name, value):
    """Rule: a pair of numbers in [0, 1) (Adam's betas)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{owner}: {name} must be a pair (beta1, beta2), got {value!r}")
    return tuple(unit_interval(owner, f"{name}[{i}]", v) for i, v in enumerate(value))


def flag(owner, name, value):
    """Rule: True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def choice(options):
    """Rule factory: the value must be one of ``options``."""
    def rule(owner, name, value):
        if value not in options:
            raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return rule


def positive_int(owner, name, value):
    """Rule: an integer >= 1 (intervals, sample counts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def nonnegative_int(owner, name, value):
    """Rule: an integer >= 0 (seeds)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: {name} must be an integer >= 0, got {value!r}")
    return int(value)


def fraction(owner, name, value):
    """Rule: a real number in (0, 1]."""
    value = positive(owner, name, value)
    if value > 1:
        raise ValueError(f"{owner}: {name} must be in (0, 1], got {value!r}")
    return value


def optional(rule):
    """Rule factory: None, or a value that passes ``rule``."""
    return lambda owner, name, value: None if value is None else rule(owner, name, value)


def _host_copy(x):
    """A NumPy copy of ``x`` that shares no memory with the optimizer's state."""
    # to_numpy returns NumPy arrays as they are; a checkpoint must not alias them.
    return x.copy() if backend.backend_of(x) == "numpy" else backend.to_numpy(x)


def check_batch(caller, X, y):
    """TypeError/ValueError unless X and y are arrays with the same number N >= 1 of rows (a step's batch)."""
    for name, value in (("X", X), ("y", y)):
        if not backend.is_array(value) or value.ndim == 0:
            raise TypeError(f"{caller}: {name} must be the batch's {'inputs' if name == 'X' else 'targets'} "
                            f"(an array with N rows, as given to the loss), got {type(value).__name__}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{caller}: X has {X.shape[0]} rows but y has {y.shape[0]}")


class HyperParameters(dict):
    """An optimizer's hyper-parameters: a dict whose every assignment is checked, and takes effect.

    ``opt.hyper["lr"] = 0.01`` runs the optimizer's rule for ``lr`` and its
    cross-checks (a bad value raises and changes nothing), then tells the
    optimizer (K-FAC resets its current λ when ``damping`` is assigned). Names
    cannot be added or removed.
    """

    def __init__(self, owner, values):
        super().__init__(values)
        self._owner = owner

    def __setitem__(self, name, value):
        if name not in self:
            raise KeyError(f"{type(self._owner).__name__}.hyper has no {name!r}; expected one of {sorted(self)}")
        checked = self._owner._check_hyper({**self, name: value})
        super().__setitem__(name, checked[name])
        self._owner._hyper_changed(name, checked[name])

    def update(self, *args, **kwargs):
        for name, value in dict(*args, **kwargs).items():
            self[name] = value

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{type(self._owner).__name__}.hyper keeps every hyper-parameter: names cannot be removed")

    __delitem__ = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self):  # copies and pickles are plain dicts
        return dict, (dict(self),)


class Optimizer:
    """Base class: holds parameters, hyper-parameters and state; subclasses implement ``step()``.

    Parameters
    ----------
    params : iterable of :class:`~minikfac.nn.Parameter` (e.g. ``net.parameters()``),
        not empty, each at most once.
    **hyper : the subclass's hyper-parameters; each is checked by the rule
        named for it in ``hyper_rules``.

    Attributes
    ----------
    params : list of Parameter, in the order given (``net.parameters()`` is
        network order, weight before bias).
    hyper : :class:`HyperParameters`, name -> Python value (float, bool, tuple
        of floats). It may be edited between steps (e.g. a learning-rate
        schedule): every assignment is checked and takes effect.
    state : dict key -> {name: array or Python number}; keys are positions in
        ``params``. Arrays have their parameter's shape, backend and dtype.
    steps : int, the number of completed ``step()`` calls.
    """

    #: name -> rule(owner, name, value) that checks and normalises a hyper-parameter.
    hyper_rules: ClassVar[dict] = {
        "lr": positive,
        "momentum": unit_interval,
        "betas": unit_interval_pair,
        "eps": positive,
        "weight_decay": nonnegative,
        "nesterov": flag,
        "decoupled": flag,
    }
    #: the names a subclass keeps in ``state[key]`` (checked when loading).
    state_names: ClassVar[tuple] = ()
    #: Whether ``step`` needs the batch, ``step(X, y)`` (K-FAC) rather than ``step()``.
    needs_batch: ClassVar[bool] = False

    def __init__(self, params, **hyper):
        self.params = self._parameter_list(params)
        self._hyper = HyperParameters(self, self._check_hyper(hyper))
        self.state = {}
        self.steps = 0

    @property
    def hyper(self):
        """The hyper-parameters (:class:`HyperParameters`: assignments are checked and take effect)."""
        return self._hyper

    @hyper.setter
    def hyper(self, values):
        if set(values) != set(self._hyper):
            raise ValueError(f"{type(self).__name__}.hyper: expected the names {sorted(self._hyper)}, "
                             f"got {sorted(values)}")
        self._hyper = HyperParameters(self, self._check_hyper(dict(values)))

    def _hyper_changed(self, name, value):
        """Called after ``hyper[name]`` was assigned ``value`` (checked); first-order methods read it each step."""

    # ------------------------------------------------------------------ #
    # Construction and validation
    # ------------------------------------------------------------------ #
    def _parameter_list(self, params):
        owner = type(self).__name__
        if isinstance(params, Parameter):
            raise TypeError(
                f"{owner}: params must be an iterable of Parameter (e.g. net.parameters()), got one Parameter; wrap it in a list"
            )
        try:
            params = list(params)
        except TypeError:
            raise TypeError(
                f"{owner}: params must be an iterable of Parameter (e.g. net.parameters()), got {type(params).__name__}"
            ) from None
        if not params:
            raise ValueError(f"{owner}: params is empty; pass net.parameters() of a net that has parameters")
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{owner}: params[{i}] is a {type(p).__name__}, expected a Parameter (pass net.parameters())"
                )
            if id(p) in seen:
                # It would be updated twice per step.
                raise ValueError(f"{owner}: params[{i}] appears more than once in params")
            seen.add(id(p))
        return params

    def _check_hyper(self, hyper):
        """Return ``hyper`` checked and normalised by ``hyper_rules``; subclasses add cross-checks."""
        owner = type(self).__name__
        checked = {}
        for name, value in hyper.items():
            rule = self.hyper_rules.get(name)
            if rule is None:
                raise TypeError(f"{owner}: unknown hyper-parameter {name!r}")
            checked[name] = rule(owner, name, value)
        return checked

    # ------------------------------------------------------------------ #
    # Gradients
    # ------------------------------------------------------------------ #
    def zero_grad(self):
        """Forget the accumulated gradients (set every ``p.grad`` to ``None``)."""
        for p in self.params:
            p.grad = None

    def _grads(self):
        """Yield ``(index, param, grad)`` for each parameter whose ``grad`` is not ``None``.

        ``grad`` has the shape of ``param.data`` and lives on the same backend
        (checked here, without touching the values, so no device sync).
        """
        owner = type(self).__name__
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            if tuple(g.shape) != tuple(p.data.shape):
                raise ValueError(
                    f"{owner}: params[{i}].grad has shape {tuple(g.shape)}, expected {tuple(p.data.shape)}"
                )
            backend.get_array_module(p.data, g)  # raises, naming both, if the backends differ
            self._check_placement(i, p.data)
            yield i, p, g

    def _check_placement(self, key, data):
        """ValueError unless the state arrays of ``key`` live where ``data`` (the parameter's array) lives:
        a net moved with ``net.to(...)`` after its optimizer was made leaves the state behind."""
        for name, value in self.state.get(key, {}).items():
            if backend.is_array(value) and backend.backend_of(value) != backend.backend_of(data):
                owner = type(self).__name__
                raise ValueError(f"{owner}: its state {name!r} is on {backend.backend_of(value)} but the parameters "
                                 f"are on {backend.backend_of(data)}: the net was moved after the optimizer was "
                                 f"made; make the optimizer after net.to(...), or move it with "
                                 f"{owner}.load_state_dict({owner.lower()}.state_dict())")

    def step(self):
        """Update every parameter that has a gradient, in place."""
        raise NotImplementedError(f"{type(self).__name__}.step")

    # ------------------------------------------------------------------ #
    # Checkpoints
    # ------------------------------------------------------------------ #
    def state_dict(self):
        """A plain, picklable snapshot: ``{"type", "hyper", "steps", "state"}``.

        ``state`` is ``{key: {name: value}}`` with arrays copied to NumPy on the
        host (the backend and dtype are restored by :meth:`load_state_dict`).
        """
        return {
            "type": type(self).__name__,
            "hyper": dict(self.hyper),
            "steps": int(self.steps),
            "state": {
                key: {name: _host_copy(v) if backend.is_array(v) else v for name, v in entry.items()}
                for key, entry in self.state.items()
            },
        }

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters, step count and state from :meth:`state_dict`'s output.

        Everything is checked before anything changes; a mismatch (another
        optimizer type, other hyper-parameter names, an unknown key or state
        name, a wrong shape) raises ``ValueError`` saying what is off. Arrays
        are copied to each parameter's backend and dtype, so a run resumed from
        a checkpoint continues exactly as an uninterrupted one. The saved
        hyper-parameters replace the current ones (as in PyTorch).
        """
        owner = type(self).__name__
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"{owner}.load_state_dict: expected a dict from state_dict(), got {type(state_dict).__name__}"
            )
        missing = [k for k in ("type", "hyper", "steps", "state") if k not in state_dict]
        if missing:
            raise ValueError(f"{owner}.load_state_dict: missing keys {missing}")
        if state_dict["type"] != owner:
            raise ValueError(
                f"{owner}.load_state_dict: the checkpoint is of a {state_dict['type']}, expected a {owner}"
            )
        saved = state_dict["hyper"]
        if set(saved) != set(self.hyper):
            raise ValueError(
                f"{owner}.load_state_dict: hyper-parameters {sorted(saved)}, expected {sorted(self.hyper)}"
            )
        hyper = self._check_hyper(dict(saved))
        steps = state_dict["steps"]
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"{owner}.load_state_dict: steps must be an integer >= 0, got {steps!r}")
        new_state = {}
        for key, entry in state_dict["state"].items():
            if not isinstance(entry, dict):
                raise TypeError(f"{owner}.load_state_dict: state[{key!r}] must be a dict, got {type(entry).__name__}")
            new_state[key] = {name: self._load_state_entry(key, name, value) for name, value in entry.items()}
        self._hyper, self.steps, self.state = HyperParameters(self, hyper), int(steps), new_state
        return self

    def _load_state_entry(self, key, name, value):
        """Check one saved state value and return it placed where it belongs.

        Here ``key`` is a parameter position: arrays must have that parameter's
        shape and are copied to its backend and dtype; Python numbers are kept.
        A subclass with other keys (K-FAC's per-layer factors) overrides this.
        """
        owner = type(self).__name__
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= key < len(self.params):
            raise ValueError(
                f"{owner}.load_state_dict: state key {key!r} is not a parameter index in [0, {len(self.params)})"
            )
        if name not in self.state_names:
            raise ValueError(
                f"{owner}.load_state_dict: state[{key}] has unknown entry {name!r}, expected one of {list(self.state_names)}"
            )
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            return value
        if not backend.is_array(value):
            raise TypeError(
                f"{owner}.load_state_dict: state[{key}][{name!r}] is a {type(value).__name__}, expected an array"
            )
        p = self.params[key]
        if tuple(value.shape) != p.shape:
            raise ValueError(
                f"{owner}.load_state_dict: state[{key}][{name!r}] has shape {tuple(value.shape)}, expected {p.shape} (the parameter's)"
            )
        # Copy first: the optimizer updates its state in place and must not write into the checkpoint.
        host = np.array(backend.to_numpy(value), dtype=p.data.dtype, copy=True)
        return backend.asarray(host, backend=backend.backend_of(p.data))

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper}, steps={self.steps})"
