"""K-FAC at its defaults against Adam at its default learning rate, at every batch size, on every bundled problem.

Each run is ``minikfac train`` with nothing but the dataset, the model, the
optimizer, the batch size and the epochs given (:func:`minikfac.jobs.train.fit`),
so K-FAC and Adam run exactly as a newcomer's command line runs them. For each
run we report the test accuracy (classifiers) or the test loss (the
autoencoder), the training loss measured afterwards on the whole training
split (eval mode), whether training diverged (a non-finite loss or
parameters), K-FAC's refused steps and final λ, and the seconds of training.
The acceptance rule, checked and printed: K-FAC never diverges, its test
accuracy is at most 0.5 points below Adam's, and on the autoencoder its final
training loss is no higher than Adam's.

Runs go to a pool of worker processes (one BLAS thread each), so a 2-core
machine runs two at a time; the seconds are therefore only indicative.

Usage: python benchmarks/robustness.py [--problems digits-mlp,...] [--batch-sizes 8 16 32 128 512 1024]
       [--optimizers kfac adam] [--workers 2] [--json PATH]
"""

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

#: name -> (dataset, model, epochs): the budget of every run of that problem.
PROBLEMS = {
    "digits-mlp": ("digits", "mlp", 10),
    "mnist-mlp": ("mnist", "mlp", 10),
    "mnist16-mlp": ("mnist16", "mlp", 10),
    "mnist-cnn": ("mnist", "cnn", 5),
    "mnist16-cnn": ("mnist16", "cnn", 5),
    "mnist-autoencoder": ("mnist", "autoencoder", 10),
}
BATCH_SIZES = (8, 16, 32, 128, 512, 1024)
#: K-FAC may be this much below Adam's test accuracy (a fraction: 0.5 points).
ACCURACY_MARGIN = 0.005


def run(problem, optimizer, batch_size):
    """One ``minikfac train`` run; returns a JSON-ready record."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    import numpy as np

    from minikfac import backend, data, models, training
    from minikfac.jobs import train as train_job

    dataset, model, epochs = PROBLEMS[problem]
    result = train_job.fit(dataset=dataset, model=model, optimizer=optimizer, batch_size=batch_size, epochs=epochs,
                          progress=False, log=None, eval_every_epoch=False)
    report, net = result.report, result.net
    loaded = data.load(dataset, flat=models.input_is_flat(model))
    task = models.task(model)
    previous = backend.get_default_dtype()
    backend.set_default_dtype(report["dtype"])
    try:
        train = training.evaluate(net, task.loss(), loaded.X_train, task.targets(loaded.X_train, loaded.y_train))
    finally:
        backend.set_default_dtype(previous)
    finite = all(np.all(np.isfinite(backend.to_numpy(p.data))) for p in net.parameters())
    diverged = not (finite and math.isfinite(train["loss"]) and math.isfinite(report["test_loss"]))
    return {"problem": problem, "optimizer": optimizer, "batch_size": batch_size, "epochs": epochs,
            "steps": report["steps"], "test_accuracy": report["test_accuracy"], "test_loss": report["test_loss"],
            "train_loss": train["loss"], "diverged": diverged, "seconds": report["train_time"],
            "refused": (report["kfac"] or {}).get("refused"), "damping": (report["kfac"] or {}).get("damping")}


def verdicts(records):
    """Per (problem, batch size): whether K-FAC meets the acceptance rule against Adam (None if a run is missing)."""
    runs = {(r["problem"], r["batch_size"], r["optimizer"]): r for r in records}
    out = {}
    for (problem, size, optimizer), kfac in runs.items():
        adam = runs.get((problem, size, "adam"))
        if optimizer != "kfac" or adam is None:
            continue
        if kfac["diverged"]:
            out[(problem, size)] = False
        elif kfac["test_accuracy"] is not None:
            out[(problem, size)] = kfac["test_accuracy"] >= adam["test_accuracy"] - ACCURACY_MARGIN
        else:
            out[(problem, size)] = kfac["train_loss"] <= adam["train_loss"]
    return out


def _cell(record):
    if record is None:
        return "—"
    if record["diverged"]:
        return "diverged"
    if record["test_accuracy"] is not None:
        return f"{100 * record['test_accuracy']:.2f}%"
    return f"{record['train_loss']:.1f} / {record['test_loss']:.1f}"


def table(records, problems, sizes):
    """Markdown: one row per problem and optimizer, one column per batch size."""
    runs = {(r["problem"], r["batch_size"], r["optimizer"]): r for r in records}
    ok = verdicts(records)
    lines = ["| problem (epochs) | optimizer | " + " | ".join(f"batch {s}" for s in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for problem in problems:
        for optimizer in ("kfac", "adam"):
            cells = []
            for size in sizes:
                record = runs.get((problem, size, optimizer))
                cell = _cell(record)
                if optimizer == "kfac" and record is not None and record["refused"]:
                    cell += f" ({record['refused']} refused)"
                if optimizer == "kfac" and ok.get((problem, size)) is False:
                    cell = f"**{cell}** ✗"
                cells.append(cell)
            label = f"{problem} ({PROBLEMS[problem][2]})" if optimizer == "kfac" else ""
            lines.append(f"| {label} | {'K-FAC' if optimizer == 'kfac' else 'Adam'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated (default: all)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--optimizers", nargs="+", default=["kfac", "adam"], choices=["kfac", "adam"])
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--json", metavar="PATH", help="write every run's record here")
    args = parser.parse_args(argv)
    problems = args.problems.split(",")
    for name in problems:
        if name not in PROBLEMS:
            parser.error(f"--problems: {name!r} is not one of {', '.join(PROBLEMS)}")
    jobs = [(p, o, s) for p in problems for s in args.batch_sizes for o in args.optimizers]
    started, records = time.perf_counter(), []
    print(f"{len(jobs)} runs on {args.workers} workers")
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {pool.submit(run, *job): job for job in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            record = future.result()
            records.append(record)
            print(f"[{done}/{len(jobs)}] {record['problem']} {record['optimizer']} batch {record['batch_size']}: "
                  f"{_cell(record)}, train loss {record['train_loss']:.4g}, {record['seconds']:.0f} s"
                  + (f", {record['refused']} refused, λ {record['damping']:.3g}" if record["refused"] is not None else ""),
                  flush=True)
    print()
    print(table(records, problems, args.batch_sizes))
    print("\ncells: test accuracy (classifiers); training loss / test loss on the whole splits (autoencoder)")
    failed = [key for key, good in verdicts(records).items() if not good]
    print(f"K-FAC meets the rule on {len(verdicts(records)) - len(failed)} of {len(verdicts(records))} pairs"
          + (": misses " + ", ".join(f"{p} at {s}" for p, s in failed) if failed else ""))
    print(f"time: {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": records, "seconds": time.perf_counter() - started}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
