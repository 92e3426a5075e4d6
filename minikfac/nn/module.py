"""Module, Parameter and Sequential: the skeleton every layer hangs on.

A Module computes ``forward(x)`` and caches what its ``backward(dout)`` needs in
attributes named ``cache_*`` (so that they can be listed, cleared and moved in
one place). ``backward`` returns dL/d(input), *adds* parameter gradients into
``Parameter.grad`` (they accumulate until ``zero_grad()``, as in PyTorch) and
never modifies ``dout``.

``backward(dout, input_grad=False)`` skips dL/d(input) and returns ``None``.
A single layer's default is ``input_grad=True`` (its input gradient is the
output gradient of the layer before it), but a whole network's,
:meth:`Sequential.backward`, is ``input_grad=False``: the data needs no
gradient, so by default the first layer does not compute it (PyTorch skips it
too for inputs that do not require grad). Ask for it with
``net.backward(dout, input_grad=True)``.

Stacked cotangents: every ``backward`` accepts ``dout`` with extra *leading*
axes, shape ``(K, *output_shape)``: K independent vectors are pulled back at
once (the curvature module sends the K columns of the output-Fisher square
root through the layers' own backward this way). Parameter gradients are then
summed over K.

Forward mode: ``jvp(dx, tangents)`` is the other direction through the same
caches. Where reverse mode pulls a cotangent dL/d(output) back into dL/d(input)
and ``.grad``, forward mode pushes a tangent forward: given how the input moves
(``dx``, same shape as the last forward's input, or ``None`` when it is the data
and stays put) and how parameters move (``tangents``, a dict Parameter -> array
of the parameter's shape; missing parameters stay put), it returns the
directional derivative of the output, J dx + J_θ dθ, at the point of the last
forward pass in training mode. It reads the ``cache_*`` attributes only: caches,
``.grad`` and parameters are left as they are. ``None`` means "zero tangent" and
travels through parameter-free layers for free, so ``net.jvp(None, tangents)``
starts work at the first layer with a tangent. K stacked tangents
``(K, *shape)`` (for dx or any parameter) give a ``(K, *output_shape)`` result;
unstacked ones broadcast against them. K-FAC's quadratic model needs J δ to
evaluate δᵀ F δ = (1/N) Σ_n (J_n δ)ᵀ H_n (J_n δ) (Martens & Grosse 2015,
§7), with H_n from ``Loss.output_hessian_product``.

Parameters are found by looking at the module's attributes in the order they
were assigned, so ``parameters()`` yields them in network order, weight
before bias.
"""

import contextlib
from collections import OrderedDict

import numpy as np

from minikfac import backend


_switches = {"parameter_grads": True}


@contextlib.contextmanager
def no_parameter_grads():
    """Within the block, ``backward`` skips the parameter gradients: no ``.grad`` is touched and their
    products are not computed, while input gradients and the ``cache_grad_output`` of every layer are.

    The curvature passes (:mod:`minikfac.curvature.statistics`) need only g, the gradient at each
    layer's output, for K-FAC's factor G; the products g aᵀ would be a third of their backward.
    Restored on leaving, also after an error (DeZero's ``using_config`` is the model).
    """
    previous = _switches["parameter_grads"]
    _switches["parameter_grads"] = False
    try:
        yield
    finally:
        _switches["parameter_grads"] = previous


def parameter_grads_enabled():
    """Whether ``backward`` computes parameter gradients now (see :func:`no_parameter_grads`)."""
    return _switches["parameter_grads"]


class Parameter:
    """A trainable array: ``data`` and its accumulated gradient ``grad``.

    Attributes
    ----------
    data : array, any shape (e.g. ``(D_out, D_in)`` for a Linear weight)
    grad : array of ``data``'s shape, or ``None`` until the first backward
        (and after ``zero_grad()``).
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = None

    @property
    def shape(self):
        return tuple(self.data.shape)

    def accumulate(self, grad):
        """Add ``grad`` (same shape as ``data``) into ``self.grad``."""
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.data.dtype}, backend={backend.backend_of(self.data)})"


class Module:
    """Base class of layers and containers.

    Subclasses implement ``forward(x)`` and ``backward(dout)``; they store
    parameters as :class:`Parameter` attributes, sub-modules as Module
    attributes, and caches as ``cache_*`` attributes.
    """

    training = True

    # ------------------------------------------------------------------ #
    # The computation
    # ------------------------------------------------------------------ #
    def __call__(self, x):
        if not backend.is_array(x):
            raise TypeError(f"{type(self).__name__}: the input must be an array (N, ...), got {type(x).__name__}; "
                            "convert it with minikfac.asarray(x)")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: the input has shape {tuple(x.shape)}; expected (N, ...) with "
                             "N >= 1 examples")
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{type(self).__name__}: the input has dtype {x.dtype}; expected real numbers "
                            "(float32 or float64)")
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dout, input_grad=True):
        """Pull ``dout`` = dL/d(output) back: return dL/d(input), accumulate parameter grads.

        With ``input_grad=False`` the input gradient is not computed and ``None``
        is returned (parameter gradients are still accumulated): nobody needs
        dL/dX for the data, and for a first Linear layer it is a third of that
        layer's backward. Layers default to ``True``, :class:`Sequential` to
        ``False``.
        """
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def jvp(self, dx, tangents=None):
        """Push tangents forward: the directional derivative of the last forward's output.

        Parameters
        ----------
        dx : tangent of the input, the last forward input's shape or (K, *that
            shape) for K stacked tangents; ``None`` if the input does not move.
        tangents : ``None`` or a dict mapping Parameter objects (this module's or
            any others) to arrays of the parameter's shape or (K, *its shape);
            a missing parameter has zero tangent.

        Returns
        -------
        The output's tangent, (*output_shape) or (K, *output_shape) when
        anything was stacked; ``None`` if dx is ``None`` and none of the
        module's parameters has a tangent. Caches, ``.grad`` and parameters
        are not modified. Raises ``RuntimeError`` without a training-mode
        forward pass, ``ValueError`` on wrong shapes, mismatched K or backends.
        """
        raise NotImplementedError(f"{type(self).__name__}.jvp")

    def _check_cached(self, *names, method="backward"):
        for name in names:
            if getattr(self, name, None) is None:
                raise RuntimeError(
                    f"{type(self).__name__}.{method} needs the cache from a forward "
                    "pass in training mode; call net.train() and net(x) first"
                )

    # ------------------------------------------------------------------ #
    # Structure
    # ------------------------------------------------------------------ #
    def named_children(self):
        """Yield ``(name, module)`` for the direct sub-modules, in assignment order."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix=""):
        """Yield ``(dotted_name, Parameter)`` in network order, weight before bias."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self):
        """List of the :class:`Parameter` objects, in network order, weight before bias."""
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """Yield this module and all its descendants, depth first, in network order."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    # ------------------------------------------------------------------ #
    # State
    # ------------------------------------------------------------------ #
    def zero_grad(self):
        """Forget the accumulated gradients (set every ``Parameter.grad`` to ``None``)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        """Training mode (the default): forward keeps the caches backward needs."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: forward keeps no caches (less memory); backward is refused."""
        return self.train(False)

    @contextlib.contextmanager
    def mode(self, training):
        """Within the block every module is in training mode (``True``) or eval mode (``False``);
        on leaving, also after an error, each module gets back the mode it had.

        For passes a library makes over a user's network (the curvature statistics, K-FAC's guard)
        without changing the mode the user set.
        """
        saved = [(m, m.training) for m in self.modules()]
        self.train(training)
        try:
            yield self
        finally:
            for module, training_before in saved:
                module.training = training_before

    def clear_cache(self):
        """Drop every ``cache_*`` attribute of this module and its descendants."""
        for m in self.modules():
            for name in list(vars(m)):
                if name.startswith("cache_"):
                    setattr(m, name, None)

    def to(self, backend_name):
        """Move parameters (and gradients) to backend ``backend_name``; caches are dropped.

        Returns ``self``. Optimizers created before the move keep state on the
        old backend: create them after ``to()`` (or reload their state_dict).
        """
        backend.module_of(backend_name)  # clear error before anything moves
        for p in self.parameters():
            p.data = backend.asarray(p.data, backend=backend_name)
            if p.grad is not None:
                p.grad = backend.asarray(p.grad, backend=backend_name)
        self.clear_cache()
        return self

    def astype(self, dtype):
        """Convert parameters to ``dtype`` ("float32"/"float64"); grads are dropped."""
        for p in self.parameters():
            p.data = p.data.astype(np.dtype(dtype))
            p.grad = None
        self.clear_cache()
        return self

    def state_dict(self):
        """An ``OrderedDict`` name -> NumPy copy of each parameter, in network order."""
        return OrderedDict((name, backend.to_numpy(p.data).copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state):
        """Copy arrays from ``state`` (as made by :meth:`state_dict`) into the parameters.

        The arrays move to each parameter's backend and dtype. Missing or
        unexpected names, wrong shapes and dtypes that are not real numbers
        (strings, objects, complex) raise ``ValueError`` before anything is
        changed: all or nothing.
        """
        params = OrderedDict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if missing or unexpected:
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        converted = {}
        for name, p in params.items():  # everything is checked and converted before anything changes
            value = state[name]
            got = tuple(np.shape(value)) if backend.backend_of(value) is None else tuple(value.shape)
            if got != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {got}, expected {p.shape}")
            dtype = np.dtype(value.dtype) if hasattr(value, "dtype") else np.asarray(value).dtype
            if dtype.kind not in "fiu":
                raise ValueError(f"load_state_dict: {name} has dtype {dtype}, expected real numbers "
                                 f"(stored as {p.data.dtype})")
            converted[name] = backend.asarray(value, backend=backend.backend_of(p.data), dtype=p.data.dtype)
        for name, p in params.items():
            p.data = converted[name]
            p.grad = None
        return self

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in children]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


# --------------------------------------------------------------------------- #
# Helpers shared by the layers
# --------------------------------------------------------------------------- #
def check_input(layer, x, trailing):
    """Raise ValueError unless ``x`` is (N, *trailing) on the weight's backend."""
    if x.ndim != 1 + len(trailing) or tuple(x.shape[1:]) != tuple(trailing):
        expected = "(N, " + ", ".join(str(t) for t in trailing) + ")"
        raise ValueError(f"{layer!r}: input has shape {tuple(x.shape)}, expected {expected}")
    try:
        backend.check_same_backend(input=x, weight=layer.weight.data)
    except ValueError as err:
        raise ValueError(f"{layer!r}: {err}") from None


def input_stamp(x):
    """A cheap stamp of an input a layer keeps by reference (not a copy): (Σx, Σx²) on the host, or None.

    The layer's gradients are computed later from that very array; if the
    caller changes it in place in between, they would silently be wrong
    (PyTorch refuses the same through the version counters of saved tensors).
    The stamp is two passes over x, small next to the layer's product; it is
    taken on NumPy only, where reading it back costs no device sync.
    """
    if backend.backend_of(x) != "numpy":
        return None
    return float(np.sum(x)), float(np.vdot(x, x))


def check_unchanged(layer, x, stamp):
    """ValueError if ``x`` no longer matches the :func:`input_stamp` taken at the forward."""
    if stamp is None:
        return
    now = input_stamp(x)
    if not all(a == b or (a != a and b != b) for a, b in zip(now, stamp)):  # NaN equals NaN here
        raise ValueError(f"{layer!r}: its input was changed in place after the forward (sum {stamp[0]:.6g} → "
                         f"{now[0]:.6g}), so the gradients would be wrong; copy the input before changing it "
                         "(x = x.copy()), or run the forward again")


def check_grad_output(layer, dout, output_shape):
    """Raise ValueError unless ``dout`` is (..., *output_shape) (leading axes are stacked cotangents)."""
    n = len(output_shape)
    if dout.ndim < n or tuple(dout.shape[dout.ndim - n:]) != tuple(output_shape):
        raise ValueError(
            f"{layer!r}.backward: dout has shape {tuple(dout.shape)}, expected "
            f"{tuple(output_shape)} (optionally with leading stacked axes)"
        )


def new_parameter(host_array):
    """A Parameter holding ``host_array`` on the current backend in the default dtype."""
    return Parameter(backend.asarray(host_array, dtype=backend.get_default_dtype()))


class Sequential(Module):
    """Layers applied in order: ``Sequential(Linear(4, 5), Tanh(), Linear(5, 3))``.

    ``forward`` runs the layers first to last; ``backward`` walks them last to
    first, iteratively, and by default does not compute dL/d(input) for the
    data (``input_grad=False``). ``net[i]`` and ``len(net)`` index the layers;
    parameter names are ``"<index>.<name>"`` (``"0.weight"``).
    """

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(layer).__name__}, expected a Module")
        self.layers = list(layers)

    def named_children(self):
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, dout, input_grad=False):
        """Walk the layers last to first, accumulating every parameter's gradient.

        Returns ``None``: by default the first layer skips dL/dX, which the data
        does not need. With ``input_grad=True`` it returns dL/dX, the input's
        shape (with dout's leading stacked axes), as a layer does.
        """
        for i in range(len(self.layers) - 1, -1, -1):
            dout = self.layers[i].backward(dout, input_grad=input_grad or i > 0)
        return dout

    def jvp(self, dx, tangents=None):
        """Push the tangents through the layers first to last (see :meth:`Module.jvp`).

        With ``dx=None`` the tangent stays ``None`` (no work) until the first
        layer with a parameter tangent.
        """
        for layer in self.layers:
            dx = layer.jvp(dx, tangents)
        return dx

    def __getitem__(self, index):
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)
