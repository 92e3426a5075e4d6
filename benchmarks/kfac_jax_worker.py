"""One framework of benchmarks/kfac_jax.py in its own process: minikfac, or kfac-jax on JAX.

Usage: python kfac_jax_worker.py {minikfac|kfac-jax} DATA.npz CPU

The process pins itself to core CPU (-1: not pinned) before NumPy or XLA
start their thread pools, then answers one JSON request per line of stdin
with one JSON line on stdout ({"error": ...} if the request failed). DATA.npz
holds the training
images ``X`` (N, 784), the loss subset ``X_subset``, the epoch orders
``orders`` (epochs, N) and the initial weights ``W0``… (out, in) and ``b0``…
in minikfac's convention s = W a + b. Step k of a run with batch size B uses
the rows ``orders[k // (N // B)]`` [(k mod N // B)·B :][:B], the inputs being
their own targets. Requests (``op`` and its arguments):

- check(rows, seed, out): on X[rows] at the initial weights, the loss, its
  gradient (``W{i}``, ``b{i}``, W's as (out, in)) and the K-FAC factors:
  ``A{i}`` (the bias coordinate last), ``G_empirical{i}`` (the data as
  targets: deterministic), ``G_sampled{i}`` (targets sampled from the model,
  as in the runs) and, minikfac only, ``G_exact{i}`` (the exact expectation),
  written to the .npz ``out``; returns {"loss"} (kfac-jax: also "registered",
  the loss computed from its registration).
- start(name, batch_size, options): a new run from the initial weights;
  returns {"compile_seconds"} (kfac-jax: tracing and compiling its step).
- train(name, steps): the next ``steps`` steps; returns {"seconds", "cpu"
  (process CPU seconds), "step", "damping"}.
- eval(name): {"loss"}, the mean per-example loss on X_subset.
- stop(name), quit.
"""

import json
import os
import sys
import time
import traceback

LAYERS = 6
LINEAR_CODE = 2  # the 30-unit code layer is linear; the last layer gives logits


def batch_rows(orders, step, batch_size):
    """The rows of step ``step`` (0-based): whole batches of each epoch's order, the rest dropped."""
    per_epoch = orders.shape[1] // batch_size
    epoch, index = divmod(step, per_epoch)
    return orders[epoch % len(orders)][index * batch_size:(index + 1) * batch_size]


class Minikfac:
    def __init__(self, data):
        from minikfac import backend

        backend.set_default_dtype("float32")
        self.data, self.X, self.X_subset, self.orders = data, data["X"], data["X_subset"], data["orders"]
        self.runs = {}

    def _net(self):
        from minikfac import models
        from minikfac.curvature.params import parametrised_layers

        net = models.autoencoder(784)
        for i, layer in enumerate(parametrised_layers(net)):
            layer.weight.data[...] = self.data[f"W{i}"]
            layer.bias.data[...] = self.data[f"b{i}"]
        return net

    def check(self, rows, seed, out):
        import numpy as np

        from minikfac import nn
        from minikfac.curvature.factors import kfac_factors
        from minikfac.curvature.params import parametrised_layers

        net, loss_fn = self._net(), nn.BCEWithLogitsLoss()
        X = self.X[rows]
        loss = loss_fn(net(X), X)
        net.backward(loss_fn.backward(), input_grad=False)
        arrays = {}
        for i, layer in enumerate(parametrised_layers(net)):
            arrays[f"W{i}"], arrays[f"b{i}"] = layer.weight.grad, layer.bias.grad
        for kind, name in (("empirical", "G_empirical"), ("mc", "G_sampled"), ("true", "G_exact")):
            for i, (A, G) in enumerate(kfac_factors(net, loss_fn, X, X, kind=kind, seed=seed)):
                arrays[f"A{i}"], arrays[f"{name}{i}"] = A, G
        np.savez(out, **arrays)
        return {"loss": float(loss)}

    def start(self, name, batch_size, options):
        from minikfac import nn, optim

        net, loss_fn = self._net(), nn.BCEWithLogitsLoss()
        self.runs[name] = {"net": net, "loss_fn": loss_fn, "optimizer": optim.KFAC(net, loss_fn, **options),
                           "batch_size": batch_size, "step": 0}
        return {"compile_seconds": 0.0}

    def train(self, name, steps):
        from minikfac import training

        run = self.runs[name]
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            X = self.X[batch_rows(self.orders, run["step"], run["batch_size"])]
            training.train_step(run["net"], run["loss_fn"], run["optimizer"], X, X)
            run["step"] += 1
        return {"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "step": run["step"],
                "damping": run["optimizer"].damping}

    def eval(self, name):
        from minikfac import training

        run = self.runs[name]
        return {"loss": training.evaluate(run["net"], run["loss_fn"], self.X_subset, self.X_subset)["loss"]}

    def stop(self, name):
        del self.runs[name]
        return {}


class KfacJax:
    def __init__(self, data):
        import jax
        import jax.numpy as jnp
        import kfac_jax

        self.jax, self.jnp, self.kfac_jax = jax, jnp, kfac_jax
        self.X, self.orders = data["X"], data["orders"]
        # kfac-jax's graph matcher recognises dense layers written x @ w + b, w of shape (in, out).
        self.initial = [(data[f"W{i}"].T.copy(), data[f"b{i}"]) for i in range(LAYERS)]
        self.X_subset = jnp.asarray(data["X_subset"])
        self.subset_loss = jax.jit(lambda params, X: jnp.mean(self._per_example(params, X)))
        self.optimizers, self.runs = {}, {}
        self.key = jax.random.PRNGKey(int(data["seed"]))

    def _params(self):
        """Fresh device copies of the initial weights (kfac-jax's step donates its inputs)."""
        return [(self.jnp.array(w), self.jnp.array(b)) for w, b in self.initial]

    def _logits(self, params, X):
        h = X
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i not in (LINEAR_CODE, LAYERS - 1):
                h = self.jax.nn.sigmoid(h)
        return h

    def _per_example(self, params, X, register=False):
        """The Bernoulli NLL of the pixels given the logits, summed over the 784 pixels: minikfac's l_n."""
        jnp = self.jnp
        logits = self._logits(params, X)
        if register:  # kfac-jax's loss: sum over everything / batch size, i.e. the batch mean of l_n
            self.kfac_jax.register_sigmoid_cross_entropy_loss(logits, X)
        return jnp.sum(jnp.maximum(logits, 0) - logits * X + jnp.log1p(jnp.exp(-jnp.abs(logits))), axis=1)

    def _loss(self, params, X):
        return self.jnp.mean(self._per_example(params, X, register=True))

    def check(self, rows, seed, out):
        import numpy as np

        jax, jnp = self.jax, self.jnp
        params, X = self._params(), jnp.asarray(self.X[rows])
        loss, grads = jax.jit(jax.value_and_grad(self._loss))(params, X)
        arrays = {}
        for i, (w, b) in enumerate(grads):
            arrays[f"W{i}"], arrays[f"b{i}"] = np.asarray(w).T, np.asarray(b)
        estimator = self.kfac_jax.BlockDiagonalCurvature(func=self._loss)
        estimator.init(self.key, (params, X), None, None)
        registered = estimator.compute_func_from_registered((params, X), X.shape[0])
        layer_of = {tuple(w.shape): i for i, (w, _) in enumerate(self.initial)}
        for mode, name in (("fisher_empirical", "G_empirical"), ("fisher_gradients", "G_sampled")):
            state = estimator.init(self.key, (params, X), None, None)
            state = estimator.update_curvature_matrix_estimate(
                state, ema_old=0.0, ema_new=1.0, identity_weight=0.0, batch_size=X.shape[0],
                rng=self.jax.random.PRNGKey(seed), func_args=(params, X), estimation_mode=mode)
            for block, block_state in zip(estimator.blocks, state.blocks_states, strict=True):
                i = layer_of[tuple(block.parameters_shapes[0])]
                arrays[f"A{i}"], arrays[f"{name}{i}"] = (np.asarray(f.value) for f in block_state.factors)
        np.savez(out, **arrays)
        return {"loss": float(loss), "registered": float(registered)}

    def _optimizer(self, batch_size, options):
        """One kfac_jax.Optimizer (and one compilation) per batch size and settings but the initial damping."""
        jax = self.jax
        settings = {k: v for k, v in options.items() if k != "initial_damping"}
        key = json.dumps([batch_size, settings], sort_keys=True)
        if key in self.optimizers:
            return self.optimizers[key], 0.0
        started = time.perf_counter()
        optimizer = self.kfac_jax.Optimizer(value_and_grad_func=jax.value_and_grad(self._loss),
                                            initial_damping=options["initial_damping"], multi_device=False,
                                            **settings)
        # Trace and compile on a throwaway state: both variants of the step (with and without the
        # damping's reduction ratio), then the run starts from a fresh state.
        X = self.jnp.asarray(self.X[batch_rows(self.orders, 0, batch_size)])
        params = self._params()
        state = optimizer.init(params, self.key, X)
        for step in range(settings.get("damping_adaptation_interval", 5)):
            params, state, _ = optimizer.step(params, state, self.key, batch=X, global_step_int=step)
        jax.block_until_ready(params)
        self.optimizers[key] = optimizer
        return optimizer, time.perf_counter() - started

    def start(self, name, batch_size, options):
        optimizer, seconds = self._optimizer(batch_size, options)
        params = self._params()
        state = optimizer.init(params, self.key, self.jnp.asarray(self.X[batch_rows(self.orders, 0, batch_size)]))
        # The initial damping is only the state's starting value: set it here, so that runs with
        # different initial dampings share one compiled optimizer.
        state.damping = self.jnp.asarray(options["initial_damping"], dtype=state.damping.dtype)
        self.runs[name] = {"optimizer": optimizer, "params": params, "state": state, "batch_size": batch_size,
                           "step": 0}
        return {"compile_seconds": seconds}

    def train(self, name, steps):
        jax, run = self.jax, self.runs[name]
        optimizer, params, state = run["optimizer"], run["params"], run["state"]
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            X = self.jnp.asarray(self.X[batch_rows(self.orders, run["step"], run["batch_size"])])
            key = jax.random.fold_in(self.key, run["step"])
            params, state, _ = optimizer.step(params, state, key, batch=X, global_step_int=run["step"])
            run["step"] += 1
        jax.block_until_ready((params, state))
        seconds, cpu = time.perf_counter() - wall, time.process_time() - cpu
        run["params"], run["state"] = params, state
        return {"seconds": seconds, "cpu": cpu, "step": run["step"], "damping": float(state.damping)}

    def eval(self, name):
        return {"loss": float(self.subset_loss(self.runs[name]["params"], self.X_subset))}

    def stop(self, name):
        del self.runs[name]
        return {}


def main():
    framework, path, cpu = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # benchmarks/kfac_jax.py would shadow the kfac_jax package: not from this folder.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})  # one core, before NumPy's BLAS or XLA size their thread pools
    import numpy as np

    data = dict(np.load(path))
    worker = {"minikfac": Minikfac, "kfac-jax": KfacJax}[framework](data)
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            reply = getattr(worker, op)(**request)
        except Exception:  # noqa: BLE001 - the coordinator prints it and stops
            reply = {"error": traceback.format_exc()}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
