# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11. From NumPy to CuPy
#
# Every array operation in minikfac is written once, against the NumPy API, and runs on the CPU (NumPy) or on a
# GPU (CuPy). This tutorial shows the few rules that make that work, and checks that the backends agree.
#
# **What you will see**
#
# - how code finds its array module from the data (`xp = mk.get_array_module(x)`), why reductions stay 0-d
#   arrays, and the errors you get when NumPy and device arrays meet — caught and printed;
# - the same training run, the same K-FAC factors and the same K-FAC steps on `"numpy"`, on `"fakegpu"` (a
#   strict stand-in for CuPy that runs on any machine) and on `"cupy"` when a GPU is present, with their largest
#   differences (for the stand-in the factors agree bit for bit, the losses and parameters to the last bit or
#   two, ~1e-16 to 1e-14);
# - timings of a forward/backward pass and of a K-FAC step for growing layer widths, on every backend this
#   machine has, with the device synchronised before each clock reading — and, without a GPU, a clear note of
#   what was skipped;
# - the stand-in's overhead *counted* rather than timed: the Python calls of one forward/backward pass, a fixed
#   number more on `"fakegpu"` than on NumPy whatever the width.

# %%
import cProfile
import pstats
import time

import matplotlib.pyplot as plt
import numpy as np

import minikfac as mk
from minikfac import plot, training

mk.set_default_dtype("float64")
mk.nn.init.manual_seed(0)

# %% [markdown]
# ## 1. Three backends, one API
#
# A backend is a *module* with NumPy's functions: `numpy`, `cupy`, or `minikfac.fakegpu`. `mk.set_backend(name)`
# chooses where new parameters and data-loader batches are created; asking for CuPy on a machine without it fails
# at once, with a message that says why and what to do.

# %%
try:
    mk.backend.module_of("cupy")
    GPU = True
    print("CuPy and a CUDA GPU are available: the 'cupy' backend runs below.")
except RuntimeError as err:
    GPU = False
    print("No 'cupy' backend here:\n ", err)

BACKENDS = ["numpy", "fakegpu"] + (["cupy"] if GPU else [])
print("backends used in this tutorial:", BACKENDS)

# %% [markdown]
# ## 2. The rules
#
# **Rule 1: the module comes from the data.** A function never imports CuPy and never assumes NumPy; it asks
# `xp = mk.get_array_module(x)` for the module of the arrays it was given and calls `xp.<function>`. Moving data is
# explicit: `mk.asarray(x, backend=...)` into a backend, `mk.to_numpy(x)` back to the host.

# %%
x_host = np.arange(6.0).reshape(2, 3)                  # (2, 3) NumPy array, host memory
x_dev = mk.asarray(x_host, backend="fakegpu")          # an explicit copy "to the device"


def softmax(x):
    """Row-wise softmax of x (N, C) on x's backend."""
    xp = mk.get_array_module(x)
    z = xp.exp(x - xp.max(x, axis=1, keepdims=True))
    return z / xp.sum(z, axis=1, keepdims=True)


for x in (x_host, x_dev):
    print(f"{type(x).__module__:18s} -> xp = {mk.get_array_module(x).__name__:16s} softmax row sums:",
          mk.to_numpy(softmax(x).sum(axis=1)))

# %% [markdown]
# **Rule 2: reductions stay 0-d arrays.** On a GPU, `float(loss)` waits for the device to finish and copies one
# number to the host. A training loop that does it every step stalls the GPU every step. So a loss is kept as a
# 0-d array (shape `()`) on its backend, and converted only at the edge — once per epoch, or when printing. The
# stand-in enforces CuPy's behaviour: `xp.sum` returns a 0-d device array, not a Python float.

# %%
total = mk.get_array_module(x_dev).sum(x_dev)
print("xp.sum on fakegpu:", repr(total), "  shape", total.shape)
print("at the edge, float(mk.to_numpy(total)) =", float(mk.to_numpy(total)))

# %% [markdown]
# **Rule 3: no implicit transfers, no mixing.** CuPy refuses to turn a device array into a NumPy array behind your
# back, and a NumPy array inside a GPU computation is a bug (a silent host-to-device copy at best). The stand-in is
# stricter than CuPy: it also refuses mixing in arithmetic and NumPy functions called on device arrays, so such
# bugs show on any machine. Here are the errors, caught:

# %%
net = mk.nn.Sequential(mk.nn.Linear(3, 4), mk.nn.Tanh(), mk.nn.Linear(4, 2)).to("fakegpu")
attempts = {
    "device + host array": lambda: x_dev + x_host,
    "np.asarray(device array)": lambda: np.asarray(x_dev),
    "np.sum(device array)": lambda: np.sum(x_dev),
    "get_array_module(host, device)": lambda: mk.get_array_module(x_host, x_dev),
    "net on fakegpu, input on numpy": lambda: net(x_host),
}
caught = {}
for what, attempt in attempts.items():
    try:
        attempt()
    except (TypeError, ValueError) as err:
        caught[what] = err
        print(f"{what}:\n  {type(err).__name__}: {err}\n")

# %% [markdown]
# The last message is what a user meets most: it names the layer, both arrays (backend, shape, dtype) and the fix.
# Moving the input fixes it:

# %%
out = net(mk.asarray(x_host, backend="fakegpu"))
print("net(asarray(x)) ->", type(out).__name__, tuple(out.shape))

# %% [markdown]
# ## 3. Same results on every backend
#
# One experiment, run once per backend: build a tanh MLP 64-32-32-10 for the 8×8 digits, move it with
# `net.to(backend)`, take 5 SGD steps on mini-batches of 128 from a `DataLoader` on that backend, compute the
# K-FAC factors $A_l = \frac1N\sum_n \bar a_n \bar a_n^\top$ and $G_l$ (exact expectation over the model's
# targets, `kind="true"`) on 256 examples, and take 3 K-FAC steps.
#
# Why the runs can agree at all: initial weights are drawn on the host (`mk.nn.init`) and the loader's shuffling
# order too, so every backend starts from the same numbers and sees the same batches. The K-FAC steps use
# `kind="true"` rather than the default Monte-Carlo targets, because CuPy's random generator gives a different
# stream from NumPy's for the same seed (see `mk.backend.default_rng`).

# %%
digits = mk.data.load("digits")
X_stats = digits.X_train[:256]                          # (256, 64) host data for the factors


def experiment(backend_name):
    """Train 5 SGD + 3 K-FAC steps on ``backend_name``; return host copies of everything worth comparing."""
    mk.set_backend(backend_name)
    mk.nn.init.manual_seed(0)
    net = mk.nn.Sequential(mk.nn.Linear(64, 32), mk.nn.Tanh(), mk.nn.Linear(32, 32), mk.nn.Tanh(),
                           mk.nn.Linear(32, 10)).to(backend_name)
    loss_fn = mk.nn.CrossEntropyLoss()
    loader = mk.data.DataLoader(digits.X_train, digits.y_train, batch_size=128, seed=0)
    batches = iter(loader)
    sgd = mk.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    losses = [training.train_step(net, loss_fn, sgd, *next(batches)) for _ in range(5)]
    factors = mk.curvature.kfac_factors(net, loss_fn, mk.asarray(X_stats), kind="true")
    kfac = mk.optim.KFAC(net, loss_fn, kind="true", inverse_interval=1)
    losses += [training.train_step(net, loss_fn, kfac, *next(batches)) for _ in range(3)]
    mk.set_backend("numpy")
    xp = mk.get_array_module(losses[0])
    return {"losses": mk.to_numpy(xp.stack(losses)),          # one transfer for all 8 losses
            "factors": [(mk.to_numpy(A), mk.to_numpy(G)) for A, G in factors],
            "params": [mk.to_numpy(p.data) for p in net.parameters()]}


results = {name: experiment(name) for name in BACKENDS}
print("losses on numpy:", np.round(results["numpy"]["losses"], 4))

# %% [markdown]
# The comparison: for each quantity, the largest entry-wise difference relative to the largest entry,
# $\max|x - x_{\text{numpy}}| / \max|x_{\text{numpy}}|$.

# %%
def relative_difference(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def differences(result, reference):
    return {
        "losses": relative_difference(result["losses"], reference["losses"]),
        "K-FAC factors": max(relative_difference(M, R) for pair, ref in zip(result["factors"], reference["factors"])
                             for M, R in zip(pair, ref)),
        "parameters": max(relative_difference(p, r) for p, r in zip(result["params"], reference["params"])),
    }


diffs = {name: differences(results[name], results["numpy"]) for name in BACKENDS if name != "numpy"}
print(f"{'relative difference to numpy':30s}" + "".join(f"{k:>16s}" for k in diffs["fakegpu"]))
for name, d in diffs.items():
    print(f"{name:30s}" + "".join(f"{v:16.2e}" for v in d.values()))

# %% [markdown]
# **Why these tolerances.** The stand-in calls the same NumPy functions on the same host arrays, so the SGD steps
# and the K-FAC factors come out bit for bit identical (0 above). The K-FAC steps do not quite: a few of the
# quadratic model's scalars (the predicted change, ρ, the step's KL) differ in their last bit between the two
# backends (the cause lies in the K-FAC step's own arithmetic, since everything before it is identical; we have
# not pinned it down), and after 3 steps the parameters differ by about $10^{-15}$ relative. We require at most
# $10^{-12}$, which also leaves room for a differently threaded BLAS. On a GPU the arithmetic is the same IEEE float64, but cuBLAS
# and cuSOLVER sum in a different order than the CPU's BLAS and LAPACK, so results differ by rounding, a few
# units of $10^{-16}$ per operation, amplified a little by 8 optimisation steps and the factors' inverses; we
# allow $10^{-8}$ there.

# %%
TOLERANCE = {"fakegpu": 1e-12, "cupy": 1e-8}

# %% [markdown]
# ## 4. What does each backend cost?
#
# We time a forward/backward pass and one K-FAC step (statistics on 128 examples, the damped factors' inverses
# formed at every step since `inverse_interval=1`, the preconditioned update and its quadratic model) for an MLP $D$-$D$-$D$-10 with batch
# 256 and growing width $D$. GPU work is *asynchronous*: a call returns when the kernel is queued, not when it has
# run. So the clock is read only after `mk.backend.synchronize(x)`, which waits for the device (a no-op on the
# host). Each time is the fastest of at least 5 repeats after one warm-up run (CuPy compiles kernels on first use):
# on a shared machine other programs only ever make a run slower, so the minimum is the least noisy estimate.

# %%
WIDTHS = [16, 64, 128, 256, 512] + ([1024] if GPU else [])


def best_time(work, sync_on, budget=0.15, least=5):
    """The fastest of at least ``least`` runs (more while under ``budget`` seconds), after one warm-up run."""
    work()                                              # warm-up: caches, CuPy's kernel compilation
    mk.backend.synchronize(sync_on)
    times = []
    while len(times) < least or sum(times) < budget:
        start = time.perf_counter()
        work()
        mk.backend.synchronize(sync_on)                 # wait for the device before reading the clock
        times.append(time.perf_counter() - start)
    return min(times)


def workloads(backend_name, width, batch=256):
    """(forward/backward, one K-FAC step, the batch X) for an MLP width-width-width-10 on one backend."""
    rng = np.random.default_rng(width)
    X = mk.asarray(rng.standard_normal((batch, width)), backend=backend_name)
    y = mk.asarray(rng.integers(0, 10, size=batch), backend=backend_name)
    mk.nn.init.manual_seed(0)
    net = mk.nn.Sequential(mk.nn.Linear(width, width), mk.nn.Tanh(), mk.nn.Linear(width, width), mk.nn.Tanh(),
                           mk.nn.Linear(width, 10)).to(backend_name)
    loss_fn = mk.nn.CrossEntropyLoss()

    def forward_backward():
        net.zero_grad()
        loss_fn(net(X), y)
        net.backward(loss_fn.backward(), input_grad=False)

    kfac = mk.optim.KFAC(net, loss_fn, inverse_interval=1, damping=1.0)
    forward_backward()                                  # K-FAC's step reads the gradients in .grad
    return forward_backward, lambda: kfac.step(X, y), X


def timings(backend_name, width):
    forward_backward, kfac_step, X = workloads(backend_name, width)
    return best_time(forward_backward, X), best_time(kfac_step, X)


times = {name: {"fwd/bwd": [], "K-FAC step": []} for name in BACKENDS}
for width in WIDTHS:
    for name in BACKENDS:
        fb, step = timings(name, width)
        times[name]["fwd/bwd"].append(fb)
        times[name]["K-FAC step"].append(step)
    print(f"D = {width:5d}  " + "  ".join(
        f"{name}: fwd/bwd {times[name]['fwd/bwd'][-1] * 1e3:7.2f} ms, K-FAC {times[name]['K-FAC step'][-1] * 1e3:7.1f} ms"
        for name in BACKENDS))

skipped = None if GPU else ("no CUDA GPU (or no CuPy) on this machine: the 'cupy' timings were skipped; "
                            "fakegpu runs on the CPU, so it shows only the stand-in's overhead")
if skipped:
    print("SKIPPED:", skipped)

# %% [markdown]
# On the host the stand-in does the same arithmetic as NumPy plus a Python wrapper around every call, so its
# overhead is a fixed cost per operation: large for small layers, vanishing as the matrix products grow
# (the ratio in the right panel goes from about 2 at $D = 16$ towards 1; where one step takes a few hundred
# milliseconds, a single point can also dip below 1 — that is the noise of a shared machine, since both do the
# same arithmetic). With a GPU, the same figure shows CuPy against NumPy: small layers are dominated by the fixed
# cost of each call (CuPy's Python overhead and the kernel launch, some microseconds each), large ones by
# arithmetic, where the GPU wins.

# In the left panel, compare the solid (forward/backward) and dashed (K-FAC step) lines of one colour as $D$
# grows; in the right panel, look at how far each backend's ratio to NumPy sits from the grey line at 1.

# %%
fig, (ax_time, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4))
styles = {"numpy": "C0", "fakegpu": "C1", "cupy": "C2"}
for name in BACKENDS:
    ax_time.loglog(WIDTHS, np.array(times[name]["fwd/bwd"]) * 1e3, "o-", color=styles[name],
                   label=f"{name}: forward/backward")
    ax_time.loglog(WIDTHS, np.array(times[name]["K-FAC step"]) * 1e3, "s--", color=styles[name],
                   label=f"{name}: K-FAC step")
    if name != "numpy":
        for kind, marker in (("fwd/bwd", "o-"), ("K-FAC step", "s--")):
            ratio = np.array(times[name][kind]) / np.array(times["numpy"][kind])
            ax_ratio.semilogx(WIDTHS, ratio, marker, color=styles[name], label=f"{name} / numpy: {kind}")
ax_time.set(xlabel="layer width D", ylabel="time (ms, best of ≥ 5)", title="MLP D-D-D-10, batch 256: time per call")
ax_ratio.axhline(1.0, color="gray", lw=0.8)
ax_ratio.set(xlabel="layer width D", ylabel="time relative to numpy (ratio)", title="Backend time / NumPy time")
ax_time.legend(fontsize=7)
ax_ratio.legend(fontsize=7)
if skipped:
    fig.suptitle("cupy skipped: no CUDA GPU on this machine (fakegpu = CPU stand-in, its overhead only)",
                 color="firebrick", fontsize=10)
fig.tight_layout()
plot.show(fig, "11_backend_timings")

# %% [markdown]
# Times depend on the machine and on whatever else it runs, so the claim "the stand-in adds a cost per call" is
# checked by **counting** instead: Python's profiler `cProfile` counts every function call, and the count does
# not change with the load. If the stand-in's overhead is a fixed cost per array operation, it adds the same
# number of calls to a forward/backward pass at every width.

# %%
def python_calls(work):
    """The number of Python (and built-in) function calls made by one ``work()``, counted by cProfile."""
    work()                                              # warm-up, as for the timings
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    return pstats.Stats(profiler).total_calls


calls = {(name, width): python_calls(workloads(name, width)[0]) for name in ("numpy", "fakegpu") for width in (16, 512)}
extra_calls = {width: calls["fakegpu", width] - calls["numpy", width] for width in (16, 512)}
for width in (16, 512):
    print(f"D = {width:3d}: one forward/backward makes {calls['numpy', width]} calls on numpy, "
          f"{calls['fakegpu', width]} on fakegpu ({extra_calls[width]} more)")

# %% [markdown]
# ## What we checked
#
# - Asking for CuPy without it, mixing a host and a device array, converting a device array implicitly, calling a
#   NumPy function on it, and feeding a NumPy batch to a net on the device each raise a `TypeError`/`ValueError`
#   whose message says how to move the data.
# - Reductions on the device are 0-d arrays.
# - Losses, K-FAC factors and parameters after 5 SGD and 3 K-FAC steps agree with NumPy: to $10^{-12}$ on the
#   stand-in (observed: 0 for the factors, ~1e-16 to 1e-14 for losses and parameters), to $10^{-8}$ on CuPy.
# - Every timing is a positive number, measured on every available backend (the times themselves are shown, not
#   checked: they change with the machine's load).
# - The stand-in's cost is a fixed number of extra Python calls per forward/backward pass, the same at $D = 16$
#   and $D = 512$ — a cost per operation, not a speed-up.

# %%
assert len(caught) == len(attempts), f"every mixing attempt must raise: {sorted(set(attempts) - set(caught))}"
assert "mk.asarray" in str(caught["net on fakegpu, input on numpy"]).replace("minikfac.asarray", "mk.asarray"), \
    "the layer's error says how to move the data"
assert "Linear" in str(caught["net on fakegpu, input on numpy"]), "the layer's error names the layer"
assert total.shape == () and float(mk.to_numpy(total)) == 15.0, "a reduction on the device is a 0-d array"
for name, d in diffs.items():
    for what, value in d.items():
        assert value <= TOLERANCE[name], f"{what} on {name} differ from numpy by {value:.2e} > {TOLERANCE[name]:.0e}"
assert diffs["fakegpu"]["K-FAC factors"] == 0.0, "on the stand-in the K-FAC factors are bit for bit NumPy's"
assert results["numpy"]["losses"][-1] < results["numpy"]["losses"][0], "the 8 steps lower the batch loss"
assert all(t > 0 for name in BACKENDS for kind in times[name].values() for t in kind), "every timing was measured"
assert extra_calls[16] > 0, "the host stand-in adds Python calls (its wrapper) to every forward/backward pass"
assert extra_calls[16] == extra_calls[512], \
    f"the stand-in's extra calls do not depend on the width (a cost per operation): {extra_calls}"
assert GPU or skipped, "without a GPU the tutorial says what it skipped"

# %% [markdown]
# ## Summary
#
# Numerical code asks the data for its array module, keeps reductions as 0-d arrays, and moves data only at the
# edges with `mk.asarray` / `net.to(...)` / `mk.to_numpy`. The strict stand-in `"fakegpu"` proves on any machine
# that the code keeps backends apart, and gives the same results to the last bit or two; CuPy gives the same results up to rounding,
# and speed only where the arithmetic outweighs the per-call cost.
#
# ## Try this
#
# - Write a function with `np.exp(x)` instead of `xp.exp(x)` and run it on a `"fakegpu"` array: which error do you get?
# - Repeat section 3 in float32 (`mk.set_default_dtype("float32")`): how large are the differences on a GPU?
# - Change the batch size in `timings` to 32 or 2048: where does the stand-in's overhead (or CuPy's speed-up) go?
