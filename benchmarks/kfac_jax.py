"""minikfac's K-FAC against kfac-jax (Google DeepMind's reference K-FAC, on JAX), on the race's autoencoder.

Like with like: the race's problem "mnist-autoencoder" (minikfac.jobs.race), the net
``models.autoencoder(784)`` (784-200-100-30-100-200-784, sigmoid hidden units,
linear 30-unit code, logits out) built once with ``nn.init.manual_seed(seed)``
in float32 and handed to both frameworks, the loss of BCEWithLogitsLoss (the
Bernoulli NLL summed over the 784 pixels, averaged over the batch), and the
same mini-batches in the same order (the race's DataLoader order, whole
batches). A check first compares, on the initial weights, the two losses, their
gradients, kfac-jax's registered loss and the K-FAC factors (empirical Fisher).

Each framework runs in its own process (benchmarks/kfac_jax_worker.py) pinned
to one core with one thread; the two take turns, so drift hits both alike.

- Step cost: after one untimed period, ``--repeats`` blocks of ``--periods``
  × lcm(inverse intervals) consecutive steps per setting, in turn; the median
  ms per step. Blocks span whole inverse periods, so eigendecompositions and
  inversions are counted. kfac-jax's compilation is done before and reported.
- The race to the target: every setting trains from the same start for
  ``--epochs`` (one per batch size: both sizes need ~250-450 steps, and an
  epoch is 15 steps at 256 but 3 at 1,024); at the race's ~60 evaluation steps
  the mean loss of the fixed 1,000-example subset is measured with the clock
  stopped. Reported: the first step and training seconds at which it is ≤ the
  race's target (80.7), and the final loss. The settings advance in turn,
  checkpoint by checkpoint. The sampled targets of the Fisher differ between
  the two (each framework's own random numbers).

Settings: minikfac's ``KFAC(net, loss_fn)`` at its defaults; minikfac doing
kfac-jax's work per step ("same work": statistics and quadratic model on the
whole batch, kfac-jax's inverse period, its initial damping); and kfac-jax
with :data:`KFAC_JAX` at each ``--kfac-jax-damping``. kfac-jax's own
autoencoder example trains on the full batch (60,000 images); here both use
mini-batches (256 and 1,024 of the 4,000 images).

kfac-jax is not a dependency: it is installed into benchmarks/.kfac-jax-venv
(:data:`PINS`) on the first run, or taken from ``--python``; without it the
benchmark says what is missing and exits 0.

Usage: python benchmarks/kfac_jax.py [--batch-sizes 256 1024] [--epochs 60 150] [--seed 0]
       [--kfac-jax-damping D [D ...]] [--repeats 3] [--periods 2] [--python PATH] [--json PATH]
"""

import argparse
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minikfac import backend, data, models, nn, optim
from minikfac.jobs import race_tracks
from minikfac.curvature.params import parametrised_layers

HERE = Path(__file__).resolve().parent
WORKER = HERE / "kfac_jax_worker.py"
VENV = HERE / ".kfac-jax-venv"
#: kfac-jax 0.0.8 and what it imports (distrax pulls in tfp-nightly), at versions that work together.
#: jax must be 0.9.1: with 0.9.2 and later kfac-jax's graph matcher fails on the first step.
PINS = ("jax==0.9.1", "jaxlib==0.9.1", "kfac-jax==0.0.8", "optax==0.2.8", "distrax==0.1.9", "chex==0.1.92",
        "dm-tree==0.1.10", "tfp-nightly==0.26.0.dev20261027", "absl-py==2.5.1", "immutabledict==4.3.1",
        "numpy==2.4.6", "scipy==1.17.1", "ml_dtypes==0.7.0", "opt_einsum==3.4.0")
JAX_VERSION = "0.9.1"
#: One core, one thread: the workers pin themselves to one core (XLA sizes its pools by the
#: affinity; these flags alone leave it using every core), and the BLAS libraries get one thread.
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: minikfac's K-FAC defaults (its damping floor, initial damping and inverse interval are read here).
KFAC_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(optim.KFAC).parameters.items()
                 if parameter.default is not inspect.Parameter.empty}
#: kfac_jax.Optimizer's settings (the initial damping comes from --kfac-jax-damping). From its
#: autoencoder example (examples/autoencoder_mnist/pipeline.py): adaptive learning rate, momentum
#: and damping (Martens & Grosse's quadratic model and Levenberg–Marquardt rule, as minikfac's), damping adapted
#: every 5 steps by 0.95^5 (minikfac: (19/20)^5), inverses every 5 steps, factor EMA 0.95. Not
#: from it: no L2 term (ours has none), no burn-in (it would use batches ours never sees), the
#: Fisher from targets sampled from the model (minikfac's kind="mc"; the example uses the default
#: "ggn_curvature_prop", random vectors through the output Hessian's square root, which estimates
#: the same matrix for a Bernoulli output), and minikfac's damping floor (1e-3; the example's 1e-5
#: goes with its full batch and its L2 term).
KFAC_JAX = {
    "l2_reg": 0.0,
    "use_adaptive_learning_rate": True,
    "use_adaptive_momentum": True,
    "use_adaptive_damping": True,
    "damping_adaptation_interval": 5,
    "damping_adaptation_decay": 0.95,
    "min_damping": KFAC_DEFAULTS["min_damping"],
    "max_damping": 1000.0,
    "inverse_update_period": 5,
    "curvature_ema": 0.95,
    "num_burnin_steps": 0,
    "estimation_mode": "fisher_gradients",
}
PROBLEM = "mnist-autoencoder"


# --------------------------------------------------------------------------- #
# kfac-jax's interpreter
# --------------------------------------------------------------------------- #
def probe(python):
    """None if ``python`` imports jax (JAX_VERSION) and kfac_jax, else what is wrong (one line)."""
    if not Path(python).exists():
        return f"{python} does not exist"
    code = "import jax, kfac_jax; print(jax.__version__, kfac_jax.__version__)"
    try:
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{python} cannot import jax and kfac_jax: {error}"
    if done.returncode:
        lines = done.stderr.strip().splitlines() or ["no message"]
        return f"{python} cannot import jax and kfac_jax: {lines[-1]}"
    jax_version, kfac_version = done.stdout.split()[-2:]
    if jax_version != JAX_VERSION:
        return (f"{python} has jax {jax_version} (kfac-jax {kfac_version}); kfac-jax 0.0.8 needs jax "
                f"{JAX_VERSION} (its graph matcher fails on the first step with jax >= 0.9.2)")
    return None


def kfac_jax_python(path):
    """(interpreter, None), or (None, why not): ``path`` as given, else benchmarks/.kfac-jax-venv (installed once)."""
    if path:
        problem = probe(path)
        return (None, problem) if problem else (path, None)
    python = VENV / "bin" / "python"
    if probe(python) is None:
        return python, None
    print(f"installing kfac-jax into {VENV} (once): {' '.join(PINS)}", flush=True)
    steps = ([] if python.exists() else [[sys.executable, "-m", "venv", str(VENV)]]) + [
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS]]
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            lines = [line for line in (done.stderr + done.stdout).strip().splitlines() if line.strip()]
            return None, f"`{' '.join(command[:4])} ...` failed: {lines[-1] if lines else 'no message'}"
    problem = probe(python)
    return (None, problem) if problem else (python, None)


# --------------------------------------------------------------------------- #
# The workers
# --------------------------------------------------------------------------- #
class Worker:
    """One framework's process; ``worker(op, **arguments)`` sends a request and returns the reply."""

    def __init__(self, framework, python, data_path, cpu):
        env = dict(os.environ, **THREADS)
        if framework == "kfac-jax":
            env.update(XLA_FLAGS=XLA_FLAGS, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
        self.framework = framework
        self.process = subprocess.Popen([str(python), str(WORKER), framework, str(data_path), str(cpu)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def __call__(self, op, **arguments):
        try:
            self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        reply = json.loads(line) if line else {"error": f"the process ended (exit code {self.process.wait()})"}
        if "error" in reply:
            raise RuntimeError(f"{self.framework} worker, {op}: {reply['error']}")
        return reply

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            self.process.wait(timeout=60)


def write_data(path, seed, epochs):
    """The problem's data, its epoch orders and the initial weights (minikfac's, seeded) in one .npz."""
    backend.set_default_dtype("float32")
    setup = race_tracks.prepare(PROBLEM, seed)
    nn.init.manual_seed(seed)
    net = models.build(race_tracks.PROBLEMS[PROBLEM].model, setup.dataset)
    X = np.asarray(backend.to_numpy(setup.X_train), dtype=np.float32)
    loader = data.DataLoader(setup.X_train, setup.Y_train, 1, seed=seed, drop_last=True)
    arrays = {"X": X, "X_subset": np.asarray(backend.to_numpy(setup.X_subset), dtype=np.float32),
              "orders": np.stack([loader.order(epoch) for epoch in range(epochs)]), "seed": np.int64(seed)}
    for i, layer in enumerate(parametrised_layers(net)):
        arrays[f"W{i}"] = np.asarray(backend.to_numpy(layer.weight.data), dtype=np.float32)
        arrays[f"b{i}"] = np.asarray(backend.to_numpy(layer.bias.data), dtype=np.float32)
    np.savez(path, **arrays)
    return arrays


# --------------------------------------------------------------------------- #
# The check, the step cost, the race
# --------------------------------------------------------------------------- #
def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def check(workers, arrays, batch_size, seed, tmp):
    """Loss, gradient, registered loss and K-FAC factors of both on the first batch; printed and returned."""
    rows = arrays["orders"][0][:batch_size].tolist()
    replies, saved = {}, {}
    for name, worker in workers.items():
        out = str(Path(tmp) / f"check-{name}.npz")
        replies[name] = worker("check", rows=rows, seed=seed, out=out)
        saved[name] = np.load(out)
    ours, theirs = saved["minikfac"], saved["kfac-jax"]
    layers = range(len([k for k in ours.files if k.startswith("W")]))

    def trace_ratios(saved, name):
        return [float(np.trace(saved[f"{name}{i}"]) / np.trace(ours[f"G_exact{i}"])) for i in layers]

    # kfac-jax's "fisher_empirical" divides G by the batch size once more, by design (its docstring):
    # the statistics of the empirical Fisher are then those of the mean gradient.
    result = {"batch": batch_size, "loss_minikfac": replies["minikfac"]["loss"],
              "loss_kfac_jax": replies["kfac-jax"]["loss"], "loss_registered": replies["kfac-jax"]["registered"],
              "loss": abs(replies["kfac-jax"]["loss"] / replies["minikfac"]["loss"] - 1),
              "registered": abs(replies["kfac-jax"]["registered"] / replies["kfac-jax"]["loss"] - 1),
              "gradient": max(relative(ours[f"{p}{i}"], theirs[f"{p}{i}"]) for i in layers for p in "Wb"),
              "A": max(relative(ours[f"A{i}"], theirs[f"A{i}"]) for i in layers),
              "G_empirical": max(relative(ours[f"G_empirical{i}"], batch_size * theirs[f"G_empirical{i}"])
                                 for i in layers),
              "G_sampled_trace_ratio": {"minikfac": trace_ratios(ours, "G_sampled"),
                                        "kfac-jax": trace_ratios(theirs, "G_sampled")}}
    spans = {name: f"{min(r):.3f}-{max(r):.3f}" for name, r in result["G_sampled_trace_ratio"].items()}
    print(f"check on the first batch ({batch_size} images), initial weights, float32:\n"
          f"  loss: minikfac {result['loss_minikfac']:.6f}, kfac-jax {result['loss_kfac_jax']:.6f} "
          f"(relative difference {result['loss']:.1e}); kfac-jax's registered loss "
          f"{result['loss_registered']:.6f} ({result['registered']:.1e} from the loss it differentiates)\n"
          f"  gradient: largest relative difference over the 12 arrays {result['gradient']:.1e}\n"
          f"  K-FAC factors, largest relative difference over the 6 layers: A {result['A']:.1e}; G of the "
          f"empirical Fisher {result['G_empirical']:.1e} (kfac-jax's 'fisher_empirical' × {batch_size}: it divides "
          f"by the batch size once more, by design)\n"
          f"  G with targets sampled from the model (the runs' Fisher), trace ÷ minikfac's exact G, per layer: "
          f"minikfac kind='mc' {spans['minikfac']}, kfac-jax 'fisher_gradients' {spans['kfac-jax']}", flush=True)
    return result


def contenders(args):
    """[(label, framework, options)]: minikfac at its defaults, minikfac doing kfac-jax's work, kfac-jax."""
    first = args.kfac_jax_damping[0]
    same_work = {"seed": args.seed, "stats_fraction": 1.0, "inverse_interval": KFAC_JAX["inverse_update_period"],
                 "damping": first, "min_damping": min(KFAC_JAX["min_damping"], first),
                 "damping_interval": KFAC_JAX["damping_adaptation_interval"], "factor_decay": KFAC_JAX["curvature_ema"]}
    return ([("minikfac defaults", "minikfac", {"seed": args.seed}),
             (f"minikfac same work (λ₀ {first:g})", "minikfac", same_work)]
            + [(f"kfac-jax (λ₀ {d:g})", "kfac-jax", dict(KFAC_JAX, initial_damping=d))
               for d in args.kfac_jax_damping])


def period(options):
    """A setting's inverse period: kfac-jax's inverse_update_period, minikfac's inverse_interval (or its default)."""
    return options.get("inverse_update_period", options.get("inverse_interval", KFAC_DEFAULTS["inverse_interval"]))


def step_cost(workers, settings, batch_size, repeats, periods):
    """Median ms per step (and CPU seconds per wall second) of each setting, blocks taken in turn."""
    unit = math.lcm(*(period(options) for _, _, options in settings))
    block = periods * unit
    compile_seconds = {}
    for label, framework, options in settings:
        compile_seconds[label] = workers[framework]("start", name="cost " + label, batch_size=batch_size,
                                                    options=options)["compile_seconds"]
        workers[framework]("train", name="cost " + label, steps=unit)  # warm-up: one whole period
    samples = {label: [] for label, _, _ in settings}
    for _ in range(repeats):
        for label, framework, _ in settings:
            samples[label].append(workers[framework]("train", name="cost " + label, steps=block))
    for label, framework, _ in settings:
        workers[framework]("stop", name="cost " + label)
    cost = {label: {"ms_per_step": 1e3 * statistics.median(r["seconds"] for r in runs) / block,
                    "cpu_per_wall": sum(r["cpu"] for r in runs) / sum(r["seconds"] for r in runs),
                    "blocks_ms": [1e3 * r["seconds"] / block for r in runs]}
            for label, runs in samples.items()}
    print(f"  step cost at batch {batch_size}, median of {repeats} blocks of {block} steps: " + "; ".join(
        f"{label} {c['ms_per_step']:.1f} ms (CPU/wall {c['cpu_per_wall']:.2f})" for label, c in cost.items()),
        flush=True)
    return cost, compile_seconds, block


def race_to_target(workers, settings, batch_size, epochs, target, examples):
    """Each setting from the same start for ``epochs``; the subset loss at the race's evaluation steps."""
    total = epochs * (examples // batch_size)
    checkpoints = race_tracks.evaluation_steps(total)
    runs = {}
    for label, framework, options in settings:
        compile_seconds = workers[framework]("start", name=label, batch_size=batch_size,
                                             options=options)["compile_seconds"]
        runs[label] = {"framework": framework, "compile_seconds": compile_seconds, "seconds": 0.0, "cpu": 0.0,
                       "step": 0, "curve": {"step": [], "seconds": [], "train_loss": []}, "damping": None}
    for count, checkpoint in enumerate(checkpoints):
        for label, framework, _ in settings:
            run = runs[label]
            if checkpoint > run["step"]:
                reply = workers[framework]("train", name=label, steps=checkpoint - run["step"])
                run["seconds"] += reply["seconds"]
                run["cpu"] += reply["cpu"]
                run["step"], run["damping"] = reply["step"], reply["damping"]
            loss = workers[framework]("eval", name=label)["loss"]
            for key, value in (("step", run["step"]), ("seconds", run["seconds"]), ("train_loss", loss)):
                run["curve"][key].append(value)
        if count % 8 == 0 or checkpoint == total:
            print(f"  batch {batch_size}, step {checkpoint:>5}/{total}: " + " | ".join(
                f"{label} {runs[label]['curve']['train_loss'][-1]:.2f}" for label, _, _ in settings), flush=True)
    for label, framework, _ in settings:
        workers[framework]("stop", name=label)
        run = runs[label]
        run["steps_to_target"], run["seconds_to_target"] = race_tracks.time_to_target(run["curve"], target)
        run["initial_loss"], run["final_loss"] = run["curve"]["train_loss"][0], run["curve"]["train_loss"][-1]
    return runs, total


def _cell(value, form, width):
    return f"{'—' if value is None else format(value, form):>{width}}"


def table(results, target):
    """The results as text: one row per batch size and setting."""
    lines = [f"{'batch':>5}  {'setting':<30}{'ms/step':>8}{'÷kfac-jax':>10}{'steps→target':>13}{'s→target':>9}"
             f"{'final loss':>11}  (target {target:g})"]
    for result in results:
        reference = next(c["ms_per_step"] for label, c in result["cost"].items() if label.startswith("kfac-jax"))
        for label, run in result["runs"].items():
            ms = result["cost"][label]["ms_per_step"]
            lines.append(f"{result['batch_size']:>5}  {label:<30}{ms:>8.1f}"
                         + _cell(None if run["framework"] == "kfac-jax" else ms / reference, ".2f", 10)
                         + (_cell(run["steps_to_target"], "d", 13) if run["steps_to_target"] is not None
                            else f"{'not reached':>13}") + _cell(run["seconds_to_target"], ".1f", 9)
                         + f"{run['final_loss']:>11.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--epochs", type=int, nargs="+", default=[60, 150],
                        help="budget of the training runs, one for all or one per batch size (default 60 150)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, batch order, sampled targets")
    parser.add_argument("--kfac-jax-damping", type=float, nargs="+", default=[KFAC_DEFAULTS["damping"], 150.0],
                        help="kfac-jax's initial damping(s); the first is also minikfac 'same work's (default: "
                             f"minikfac's, {KFAC_DEFAULTS['damping']:g}, and kfac-jax's autoencoder example's, 150)")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per setting (default 3)")
    parser.add_argument("--periods", type=int, default=2, help="whole inverse periods per block (default 2)")
    parser.add_argument("--python", help="an interpreter with jax 0.9.1 and kfac-jax 0.0.8 (default: install "
                                         "them into benchmarks/.kfac-jax-venv)")
    parser.add_argument("--cpu", type=int, help="the core both workers run on (default: the last one allowed)")
    parser.add_argument("--json", metavar="PATH", help="write everything measured as JSON")
    args = parser.parse_args(argv)
    if len(args.epochs) not in (1, len(args.batch_sizes)):
        parser.error("--epochs takes one value, or one per batch size")
    epochs = dict(zip(args.batch_sizes, args.epochs * len(args.batch_sizes) if len(args.epochs) == 1 else args.epochs))
    started = time.perf_counter()

    python, problem = kfac_jax_python(args.python)
    if problem:
        print(f"skipped: kfac-jax is not available ({problem})")
        return 0
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else -1
    target = race_tracks.PROBLEMS[PROBLEM].target_loss
    settings = contenders(args)
    report = {"settings": {"problem": PROBLEM, "batch_sizes": args.batch_sizes, "epochs": epochs,
                           "seed": args.seed, "repeats": args.repeats, "periods": args.periods, "cpu": cpu,
                           "target_loss": target, "kfac_jax": KFAC_JAX, "pins": PINS, "xla_flags": XLA_FLAGS,
                           "contenders": [{"label": label, "framework": framework, "options": options}
                                          for label, framework, options in settings]},
              "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        arrays = write_data(Path(tmp) / "data.npz", args.seed, max(epochs.values()))
        examples = len(arrays["X"])
        print(f"{PROBLEM}: {examples} training images, subset {len(arrays['X_subset'])}, target {target:g}; "
              f"both frameworks {'unpinned' if cpu < 0 else f'on core {cpu}'}, one thread; kfac-jax from {python}",
              flush=True)
        workers = {"minikfac": Worker("minikfac", sys.executable, Path(tmp) / "data.npz", cpu),
                   "kfac-jax": Worker("kfac-jax", python, Path(tmp) / "data.npz", cpu)}
        try:
            report["check"] = check(workers, arrays, args.batch_sizes[0], args.seed, tmp)
            for batch_size in args.batch_sizes:
                print(f"batch {batch_size} ({examples // batch_size} steps an epoch, {epochs[batch_size]} epochs):",
                      flush=True)
                cost, compile_seconds, block = step_cost(workers, settings, batch_size, args.repeats, args.periods)
                print("  kfac-jax compilation (tracing, graph matching, both step variants): "
                      f"{sum(compile_seconds.values()):.1f} s", flush=True)
                runs, total = race_to_target(workers, settings, batch_size, epochs[batch_size], target, examples)
                report["results"].append({"batch_size": batch_size, "steps": total, "block": block, "cost": cost,
                                          "compile_seconds": sum(compile_seconds.values()), "runs": runs})
        finally:
            for worker in workers.values():
                worker.close()
    report["seconds"] = time.perf_counter() - started
    print()
    print(table(report["results"], target))
    budgets = ", ".join(f"{epochs[r['batch_size']]} epochs ({r['steps']} steps) at batch {r['batch_size']}"
                        for r in report["results"])
    print(f"ms/step: median of {args.repeats} blocks of {report['results'][0]['block']} steps, one core each, in "
          f"turn; ÷kfac-jax: ÷ kfac-jax (λ₀ {args.kfac_jax_damping[0]:g}); steps/s → target: the first of ~60 "
          f"evaluations of the {len(arrays['X_subset'])}-image subset (clock stopped) ≤ {target:g}; budget "
          f"{budgets}; kfac-jax compilation " + ", ".join(f"{r['compile_seconds']:.0f} s" for r in report["results"])
          + f" (excluded); total time {report['seconds']:.0f} s")
    shares = [run["cpu"] / run["seconds"] for r in report["results"] for run in r["runs"].values()]
    shares += [c["cpu_per_wall"] for r in report["results"] for c in r["cost"].values()]
    print(f"CPU seconds per wall second of the workers while timed: {min(shares):.2f}-{max(shares):.2f} "
          "(1 = a core of their own; less = other processes shared it)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
