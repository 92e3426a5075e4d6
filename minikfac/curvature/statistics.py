"""Per-example quantities, pulled through the layers' own backward code.

Every curvature matrix of this package has the form

    F = (1/N) Σ_n Σ_k J_nkᵀ J_nk        (P, P),

where J_nk (a row of length P) is the gradient w.r.t. the parameters of
s_nkᵀ f(x_n), the network output f(x_n) contracted with a *cotangent* s_nk.
Which cotangents, K per example, decides the matrix:

=============  ==========================================  ===================================
kind           s_nk, k = 1..K                              matrix
=============  ==========================================  ===================================
"true"         columns of the output-Fisher square root    true Fisher, exact expectation over
               S_n (loss.output_fisher_sqrt), K = D_out    y ~ p(y|x_n) (Martens 2020, eq. (9))
"mc"           ∇_f ℓ(y_nk) / √K for K sampled y_nk          Monte-Carlo Fisher, K samples
"empirical"    ∇_f ℓ(y_n) with the data label, K = 1       empirical Fisher (Kunstner et al. 2019)
"ggn"          unit vectors e_k, K = D_out, plus H_n       Jᵀ H J (Schraudolph 2002): F =
                                                           (1/N) Σ_n J_nᵀ H_n J_n
=============  ==========================================  ===================================

All K cotangents of a chunk of examples go through ``net.backward`` at once as
a stacked cotangent of shape (K, n, D_out) (see ``nn/module.py``). Afterwards
each Linear/Conv2d layer holds its input a (``cache_input``) and the pulled-back
gradients g = ∂(s_nkᵀ f)/∂s_layer (``cache_grad_output``), and the per-example
gradient of W̄ = [W | b] is g āᵀ with ā = [a; 1] — summed over positions for
a convolution (Grosse & Martens 2016, eq. (5)). No layer derivative is written
twice: this module only forms outer products of what the layers cached.

Examples are processed in chunks, so memory stays bounded however large N is.
"""

import contextlib
from dataclasses import dataclass

from minikfac import backend
from minikfac.curvature.params import has_bias, homogeneous_inputs, layer_slices, parametrised_layers
from minikfac.nn.module import no_parameter_grads

KINDS = ("true", "mc", "empirical", "ggn")
CHUNK_BYTES = 64 * 2**20  # budget for one chunk's per-example gradient rows (K·n·P numbers)


class LayerStatistics:
    """What one parametrised layer saw for one chunk of n examples.

    Attributes
    ----------
    layer : the Linear or Conv2d module.
    raw : a, the layer's cached input without the 1 of the bias: (n, D_in) for
        Linear, the im2col patches (n, L, D_in) for Conv2d (L = OH·OW positions,
        D_in = C_in·KH·KW); a view of the cache, nothing copied.
    inputs : ā, (n, D_in + 1) or (n, L, D_in + 1), the trailing 1 only when the
        layer has a bias; formed from ``raw`` on first use (a copy: K-FAC's
        factor A is computed without it, :func:`minikfac.curvature.factors.input_factor_sum`).
    grads : g, (K, n, D_out) for Linear, (K, n, L, D_out) for Conv2d: the
        gradient w.r.t. the layer's output (pre-activation) of each cotangent.
    """

    def __init__(self, layer, inputs, grads, raw=None):
        self.layer, self.grads, self.raw, self._inputs = layer, grads, raw, inputs

    @property
    def inputs(self):
        if self._inputs is None:
            self._inputs = homogeneous_inputs(self.raw, has_bias(self.layer))
        return self._inputs


@dataclass
class Chunk:
    """Examples ``start:stop`` of the data, with one :class:`LayerStatistics` per layer.

    ``output_hessian`` is (n, D_out, D_out) for ``kind="ggn"`` (H_n = ∇²_f ℓ_n)
    and ``None`` otherwise. ``output`` is the network output f of the chunk,
    (n, D_out); the layers' caches of that forward stay valid until the next
    chunk is requested (the K-FAC optimizer pushes tangents through them).
    """

    start: int
    stop: int
    layers: list
    output_hessian: object = None
    output: object = None


def check_kind(kind, allowed=KINDS):
    """Raise ValueError unless ``kind`` is one of ``allowed``; return it."""
    if kind not in allowed:
        raise ValueError(f"kind must be one of {', '.join(map(repr, allowed))}; got {kind!r}")
    return kind


def number_of_cotangents(kind, d_out, samples=1):
    """K, the cotangents per example, for ``kind`` and an output of size D_out."""
    if check_kind(kind) == "mc" and not _is_positive_int(samples):
        raise ValueError(f"samples must be a positive int for kind='mc', got {samples!r}")
    return {"true": d_out, "ggn": d_out, "mc": samples, "empirical": 1}[kind]


def cotangents(loss_fn, out, kind, y=None, samples=1, rng=None):
    """The stacked cotangents s_nk of ``kind`` for outputs ``out`` (n, D_out): (K, n, D_out).

    Per example, not divided by N (see the table in the module docstring).
    ``y`` is needed for ``"empirical"``; ``rng`` (from
    :func:`minikfac.backend.default_rng` on ``out``'s backend) for ``"mc"``.
    """
    xp = backend.get_array_module(out)
    if kind == "true":
        return loss_fn.output_fisher_sqrt(out)
    if kind == "ggn":
        n, d_out = out.shape
        return xp.eye(d_out, dtype=out.dtype)[:, None, :] * xp.ones((1, n, 1), dtype=out.dtype)
    if kind == "empirical":
        return loss_fn.per_example_gradient(out, y)[None]
    draws = [loss_fn.per_example_gradient(out, loss_fn.sample_targets(out, rng)) for _ in range(samples)]
    return xp.stack(draws) / (samples ** 0.5)


def hessian_weighted(grads, hessian):
    """Σ_j H_n[k, j] g_{j, n, ...}, the right-hand factor of Jᵀ H J; ``grads`` itself if H is None.

    grads: (K, n, D) or (K, n, L, D) with K = D_out of the network (any
    trailing shape: each example's block is weighted as one); hessian: (n, K, K).
    This is how ``kind="ggn"`` puts the loss's output Hessian H_n between the
    two Jacobians of F = (1/N) Σ_n J_nᵀ H_n J_n.
    """
    if hessian is None:
        return grads
    xp = backend.get_array_module(grads)
    k, n = grads.shape[:2]
    weighted = xp.einsum("nkj,jnd->knd", hessian, grads.reshape(k, n, -1))
    return weighted.reshape(grads.shape)


def _layer_statistics(layer):
    """a and g of ``layer`` from its caches after a backward (see LayerStatistics)."""
    xp = backend.get_array_module(layer.cache_input)
    a, g = layer.cache_input, layer.cache_grad_output
    if g.ndim == (4 if a.ndim == 3 else 2):  # one cotangent sent unstacked: (n, C_out, OH, OW) or (n, D_out)
        g = g[None]
    if g.ndim == 5:  # Conv2d: (K, n, C_out, OH, OW) -> (K, n, L, C_out), rows in the patches' order
        k, n, c_out = g.shape[:3]
        g = xp.moveaxis(g, 2, -1).reshape(k, n, -1, c_out)
    return LayerStatistics(layer, None, g, raw=a)


def layer_gradients(stats, out=None):
    """Per-example, per-cotangent gradients of W̄ from ``stats``: (K, n, P_l), canonical order.

    Row (k, n) is vec(g_nk ā_nᵀ) = ā_n ⊗ g_nk for Linear (Martens & Grosse
    2015, §2), and Σ_l ā_nl ⊗ g_nkl over the L positions for Conv2d
    (Grosse & Martens 2016, eq. (5)). With column-stacking vec, entry
    i·D_out + o is ā_i g_o, which is the C-order flattening of the (D_in + 1,
    D_out) outer product.

    ``out``, if given, is a (K, n, P_l) array (typically a strided view: the
    layer's columns of a buffer holding all layers' rows) that receives the
    result and is returned; for Linear layers no temporary is made.
    """
    a, g = stats.inputs, stats.grads
    xp = backend.get_array_module(a)
    k, n = g.shape[:2]
    shape = (k, n, a.shape[-1], g.shape[-1])
    if out is not None and tuple(out.shape) != (k, n, shape[2] * shape[3]):
        raise ValueError(f"layer_gradients: out has shape {tuple(out.shape)}, expected {(k, n, shape[2] * shape[3])}")
    # Splitting the last axis of out is always a view, so what is written there lands in out.
    target = None if out is None else out.reshape(shape)
    if a.ndim == 2:
        outer = xp.multiply(a[None, :, :, None], g[:, :, None, :], out=target)
    else:  # (1, n, D_in+1, L) @ (K, n, L, D_out): the sum over positions is a batched product
        outer = xp.matmul(xp.swapaxes(a, 1, 2)[None], g)
        if target is not None:
            target[...] = outer
    return outer.reshape(k, n, -1) if out is None else out


def default_chunk_size(net, kind, X, samples=1, budget_bytes=CHUNK_BYTES):
    """Examples per chunk so that the K·n·P gradient rows of a chunk fit in ``budget_bytes``."""
    layers = parametrised_layers(net)
    d_out = layers[-1].weight.shape[0]
    params = sum(p.data.size for p in net.parameters())
    per_example = number_of_cotangents(kind, d_out, samples) * params * X.dtype.itemsize
    return int(max(1, min(X.shape[0], budget_bytes // max(per_example, 1))))


def statistics_chunk_size(net, kind, X, samples=1, budget_bytes=CHUNK_BYTES):
    """Examples per chunk for passes that keep only a and g, never per-example rows: an int, or None.

    For a net of Linear layers the K·n·(D_out + D_in + 1) numbers of a chunk's
    caches fit in ``budget_bytes`` (K-FAC's factors, EKFAC's scalings, the
    diagonal need no more), so chunks are P/(D_out + D_in + 1) times larger
    than :func:`default_chunk_size`'s. None (use that default) for conv layers,
    whose caches grow with the positions, and for ``kind="mc"``, whose draws
    depend on the chunks and so keep the one default of every MC computation.
    """
    layers = parametrised_layers(net)
    if kind == "mc" or not all(layer.weight.data.ndim == 2 for layer in layers):
        return None
    width = sum(layer.weight.shape[0] + layer.weight.shape[1] + 1 for layer in layers)
    per_example = number_of_cotangents(kind, layers[-1].weight.shape[0], samples) * width * X.dtype.itemsize
    return int(max(1, min(X.shape[0], budget_bytes // per_example)))


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_data(X, y, kind):
    """Raise ValueError unless X is (N, ...) with N >= 1 (and y has N rows, needed for "empirical")."""
    if not backend.is_array(X) or X.ndim < 2 or X.shape[0] < 1:
        shape = tuple(X.shape) if backend.is_array(X) else type(X).__name__
        raise ValueError(f"X must be an array of shape (N, ...) with N >= 1, got {shape}")
    if kind == "empirical":
        if y is None:
            raise ValueError("kind='empirical' needs the data labels: pass y=")
        if not backend.is_array(y) or y.shape[0] != X.shape[0]:
            shape = tuple(y.shape) if backend.is_array(y) else type(y).__name__
            raise ValueError(f"y must be an array with N = {X.shape[0]} rows (like X), got {shape}")


def chunks(net, loss_fn, X, y=None, kind="true", samples=1, seed=0, chunk_size=None):
    """Yield one :class:`Chunk` per block of examples: forward, then a stacked backward.

    Parameters
    ----------
    net : Module whose parametrised layers are Linear / Conv2d.
    loss_fn : a :class:`minikfac.nn.Loss` (knows its output distribution).
    X : (N, ...) inputs; y : targets, needed for ``kind="empirical"``.
    kind : "true", "mc", "empirical" or "ggn" (module docstring).
    samples : K for ``kind="mc"``; seed : its random seed (the draws depend
        on ``seed`` and on ``chunk_size``).
    chunk_size : examples per chunk (default: :func:`default_chunk_size`).

    The arguments are checked at once (not at the first iteration). The
    network's parameter gradients (their values), training mode and caches
    are restored or cleared when the generator finishes or is closed:
    computing curvature never changes a ``.grad`` the caller holds. The
    statistics of a chunk are valid until the next one is requested.
    """
    check_kind(kind)
    check_data(X, y, kind)
    if kind == "mc" and not _is_positive_int(samples):
        raise ValueError(f"samples must be a positive int for kind='mc', got {samples!r}")
    if chunk_size is None:
        chunk_size = default_chunk_size(net, kind, X, samples)
    if not _is_positive_int(chunk_size):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    layers = parametrised_layers(net)
    return _chunk_generator(net, loss_fn, X, y, kind, samples, seed, chunk_size, layers)


def mean_over_chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size, per_layer, layer_args, caller):
    """(1/N) Σ over the chunks of ``per_layer(stats, output_hessian, *args)``, for each layer.

    The shared loop of the statistics that need every example once and fold
    each chunk into a per-layer sum (EKFAC's scalings, the inner products of a
    Kronecker pair with the Fisher blocks). Arguments as in :func:`chunks`;
    ``layer_args`` holds one tuple of extra arguments per parametrised layer
    (e.g. its eigenbases (U_A, U_G)), ``caller`` names the function in errors.
    Returns one array per layer, the sums divided by N.
    """
    sums, total = None, None
    for chunk in chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size):
        if len(chunk.layers) != len(layer_args):
            raise ValueError(f"{caller}: got {len(layer_args)} per-layer arguments for {len(chunk.layers)} layers")
        updates = [per_layer(stats, chunk.output_hessian, *args) for stats, args in zip(chunk.layers, layer_args)]
        sums = updates if sums is None else [total_ + update for total_, update in zip(sums, updates)]
        total = chunk.stop
    return [total_ / total for total_ in sums]


@contextlib.contextmanager
def one_pass(net, loss_fn, X, y=None, kind="true", samples=1, seed=0):
    """The statistics of all of X as one :class:`Chunk`, alive for the ``with`` block.

    Arguments as in :func:`chunks`, with a single chunk of every row. Inside
    the block the layers keep the caches of this forward and backward (the
    chunk's arrays are views of them, and ``net.jvp`` reads them); on leaving,
    also after an error or a ``return``, the caches are cleared and the
    parameters' ``.grad`` are what they were. The K-FAC optimizer's step is
    one such block::

        with statistics.one_pass(net, loss_fn, X, y, kind="mc", seed=k) as chunk:
            ...  # chunk.layers[i].inputs, .grads; chunk.output; net.jvp(None, tangents)
    """
    passes = chunks(net, loss_fn, X, y, kind, samples, seed, chunk_size=X.shape[0])
    try:
        yield next(passes)
    finally:
        passes.close()


def _chunk_generator(net, loss_fn, X, y, kind, samples, seed, chunk_size, layers):
    rng = backend.default_rng(seed, like=X) if kind == "mc" else None
    params = net.parameters()
    saved_grads = [p.grad for p in params]
    try:
        with net.mode(training=True):
            for start in range(0, X.shape[0], chunk_size):
                stop = min(start + chunk_size, X.shape[0])
                out = net(X[start:stop])
                targets = None if y is None else y[start:stop]
                stacked = cotangents(loss_fn, out, kind, targets, samples, rng)
                # Only g is needed (the layers cache it); no parameter gradient is formed,
                # so the caller's .grad arrays are never written to.
                with no_parameter_grads():  # one cotangent goes unstacked: the layers' plain path is the fastest
                    net.backward(stacked[0] if stacked.shape[0] == 1 else stacked, input_grad=False)
                hessian = loss_fn.output_hessian(out) if kind == "ggn" else None
                yield Chunk(start, stop, [_layer_statistics(layer) for layer in layers], hessian, out)
    finally:
        for p, grad in zip(params, saved_grads):
            p.grad = grad
        net.clear_cache()


def per_example_gradients(net, loss_fn, X, y, chunk_size=None):
    """∇_θ ℓ_n for every example: (N, P) in the canonical order.

    Row n is the gradient of the per-example loss ℓ_n (not divided by N), so
    ``per_example_gradients(...).mean(axis=0)`` equals ``flatten(net, "grad")``
    after a backward of the mean loss. Memory is N·P numbers: each layer
    writes its columns of the result directly (:func:`layer_gradients`).
    """
    slices = layer_slices(net)
    gradients = None
    for chunk in chunks(net, loss_fn, X, y, kind="empirical", chunk_size=chunk_size):
        if gradients is None:
            xp = backend.get_array_module(X)
            dtype = xp.result_type(chunk.layers[0].inputs, chunk.layers[0].grads)
            gradients = xp.empty((X.shape[0], slices[-1].stop), dtype=dtype)
        for stats, columns in zip(chunk.layers, slices):
            layer_gradients(stats, out=gradients[None, chunk.start:chunk.stop, columns])
    return gradients
