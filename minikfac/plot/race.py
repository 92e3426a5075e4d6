"""The race's figures: training loss against iterations and seconds, and the cost of a step."""

import os

import numpy as np
from matplotlib.figure import Figure

from minikfac.plot.curves import check_series


#: One colour per optimizer in every race figure (six of the tableau palette, apart in hue).
METHOD_COLORS = {"sgd": "tab:blue", "adam": "tab:orange", "kfac": "tab:green", "shampoo": "tab:red",
                 "soap": "tab:purple", "muon": "tab:brown"}
#: And one line style each, so that the best runs stay apart in grey print and for colour-blind readers.
METHOD_STYLES = {"sgd": "-", "adam": "--", "kfac": "-", "shampoo": "-.", "soap": ":", "muon": (0, (5, 1, 1, 1))}
#: The optimizers' names in titles.
METHOD_NAMES = {"sgd": "SGD with momentum", "adam": "Adam", "kfac": "K-FAC", "shampoo": "Shampoo",
                "soap": "SOAP", "muon": "Muon"}


def _spoken_list(names):
    """["a", "b", "c"] -> "a, b and c"."""
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _race_axes(ax, xlabel, ylabel, title, log_x=False, legend=True):
    """Labels, grid and legend of one race panel (log y; log x on request)."""
    if log_x:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(fontsize=8)


def race_curves(result, path, title=None):
    """Training loss against iterations (left) and against seconds (right) of one race problem.

    result : one problem's dict of :func:`minikfac.jobs.race.race_problem` — its
        ``runs`` (each with ``method``, ``label`` and ``curve`` = {"step",
        "seconds", "train_loss"}), ``best`` ({method: index}) and
        ``problem["target_loss"]``. Every run is drawn, faint and without a
        legend entry; the best run of each method bold, in the method's colour
        and line style (:data:`METHOD_COLORS`, :data:`METHOD_STYLES`), its
        crossing of the target (dashed line) marked, a best at the edge of its
        sweep (``sweep_edge``) said so in the legend. The legend sits below
        the panels, so that six methods hide no curve.
    path : the image file; title : the figure's title (default the problem's name).

    Returns ``path``.
    """
    try:
        runs, best, target = result["runs"], set(result["best"].values()), result["problem"]["target_loss"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"result must be a problem's dict from minikfac.jobs.race.race_problem ({err!r} missing)") from None
    if not runs:
        raise ValueError("result has no runs to plot")
    methods = list(dict.fromkeys(run["method"] for run in runs))
    swept = {m for m in methods if sum(run["method"] == m for run in runs) > 1}
    edges = result.get("sweep_edge", {})
    fig = Figure(figsize=(12, 5.2 if len(methods) > 3 else 4.6), dpi=100)
    axes = fig.subplots(1, 2, sharey=True)
    for i, run in enumerate(runs):
        curve, method = run["curve"], run["method"]
        color, style = METHOD_COLORS.get(method, "tab:gray"), METHOD_STYLES.get(method, "-")
        loss = np.asarray(curve["train_loss"], dtype=np.float64)
        shown = np.isfinite(loss) & (loss > 0)
        for ax, x, reached in zip(axes, ("step", "seconds"), ("steps_to_target", "seconds_to_target"), strict=True):
            xs = np.asarray(curve[x], dtype=np.float64)
            if i in best:
                label = run["label"] + (" (best)" if method in swept else "")
                if edges.get(method):
                    label += f", at the sweep's {edges[method]} edge"
                ax.plot(xs[shown], loss[shown], color=color, linestyle=style, linewidth=2.0, label=label, zorder=3)
                if run[reached] is not None:
                    ax.plot(run[reached], target, marker="o", color=color, markersize=6, zorder=4)
            else:
                ax.plot(xs[shown], loss[shown], color=color, linestyle=style, linewidth=0.8, alpha=0.3,
                        label="_nolegend_")
    for ax in axes:
        ax.axhline(target, color="gray", linestyle="--", linewidth=1.0, label=f"target {target:g}")
    name = result["problem"].get("name", "")
    if "batch_size" in result["problem"]:
        name += f" (batch {result['problem']['batch_size']})"
    _race_axes(axes[0], "iteration", "training loss (subset, eval mode)", "loss vs iterations", legend=False)
    _race_axes(axes[1], "seconds of training", "", "loss vs wall-clock", legend=False)
    handles, labels = axes[0].get_legend_handles_labels()
    if swept:
        handles.append(axes[0].plot([], [], color="gray", linewidth=0.8, alpha=0.4)[0])
        labels.append("other learning rates of a sweep")
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    rivals = [METHOD_NAMES.get(m, m) for m in methods if m != "kfac"]
    head = "K-FAC (defaults) vs " if "kfac" in methods else ""
    contenders = f"{head}{_spoken_list(rivals) or 'nothing'}" + (" (each the best of a learning-rate sweep)"
                                                                   if swept - {"kfac"} else "")
    # Two lines when the contenders make a long title: six methods fit the figure's width then.
    fig.suptitle(title or (f"{name}: {contenders}" if len(contenders) < 70 else f"{name}\n{contenders}"), fontsize=11)
    rows = -(-len(labels) // min(4, len(labels)))  # the legend's rows, below the panels
    fig.tight_layout(rect=(0, 0.035 * rows + 0.02, 1, 1))
    fig.savefig(os.fspath(path))
    return path


def step_cost(costs, path, title=None, goal=None):
    """Seconds per step against the batch size (left) and the ratio to SGD's (right), one row per net.

    costs : list of :func:`minikfac.jobs.step_cost.step_cost` dicts (``problem``,
        ``batch_sizes``, ``seconds`` and ``ratio_to_sgd``: {method: [value or
        None per batch size]}, ``inverse_interval``).
    goal : optional (batch size, ratio) drawn as a dashed line in the ratio
        panels, e.g. :data:`minikfac.jobs.step_cost.STEP_COST_GOAL`.
    path, title as usual. Returns ``path``.
    """
    if not costs:
        raise ValueError("costs is empty: pass a list of step_cost dicts")
    fig = Figure(figsize=(11, 3.6 * len(costs)), dpi=100)
    axes = np.atleast_2d(fig.subplots(len(costs), 2, squeeze=False))
    for row, cost in zip(axes, costs, strict=True):
        sizes = np.asarray(cost["batch_sizes"], dtype=np.float64)
        for panel, key in zip(row, ("seconds", "ratio_to_sgd"), strict=True):
            for method, values in cost[key].items():
                if key == "ratio_to_sgd" and method == "sgd":
                    continue
                y = check_series(f"{key}[{method!r}]", [np.nan if v is None else v for v in values], sizes.size)
                shown = np.isfinite(y) & (y > 0)
                panel.plot(sizes[shown], y[shown], marker="o", linewidth=1.4, color=METHOD_COLORS.get(method, "tab:gray"),
                           linestyle=METHOD_STYLES.get(method, "-"), label=METHOD_NAMES.get(method, method))
        if goal is not None:
            row[1].axhline(goal[1], color="gray", linestyle="--", linewidth=1.0,
                           label=f"goal ≤ {goal[1]:g} at batch {goal[0]}")
        _race_axes(row[0], "batch size", "seconds per step", f"{cost['problem']}: step time", log_x=True)
        _race_axes(row[1], "batch size", "÷ SGD's step",
                   f"{cost['problem']}: ratio to SGD (T = {cost['inverse_interval']})", log_x=True)
        for panel in row:  # the measured batch sizes as plain numbers, not powers of ten
            panel.set_xticks(sizes, [f"{size:g}" for size in sizes])
            panel.set_xticks([], minor=True)
    fig.suptitle(title or "Cost of one training step (median of repeated blocks)")
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return path


def race_figures(report, out_dir):
    """All figures of a race report (:func:`minikfac.jobs.race.race`) in ``out_dir`` (created); returns the paths.

    ``race_<problem>.png`` per problem (:func:`race_curves`) and
    ``step_cost.png`` (:func:`step_cost`) when the step cost was measured.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = [race_curves(result, os.path.join(out_dir, f"race_{name}.png"))
               for name, result in report["problems"].items()]
    if report.get("step_cost"):
        goal = report.get("settings", {}).get("step_cost_goal")
        written.append(step_cost(list(report["step_cost"].values()), os.path.join(out_dir, "step_cost.png"),
                                 goal=tuple(goal) if goal else None))
    return written
