"""``summary.md`` of ``minikfac demo``: every table and figure with how to read it and what it shows.

The report is read by students as much as by researchers, so each term is
defined where it first appears, each figure has a paragraph saying what is
drawn and what to take away, and the numbers in those paragraphs are read off
the report itself (never typed in): :func:`markdown` takes the dict that
:func:`minikfac.jobs.demo.run` returns.
"""


import numpy as np


def format_or_dash(value, form):
    """``value`` formatted with ``form``, or "—" when it is None (a run that never got there)."""
    return "—" if value is None else format(value, form)


def upper_bound_mark(versus):
    """"< " when the ratio is only an upper bound (the other method never reached the target)."""
    return "< " if versus["upper_bound"] else ""


def _span(values, form=".2f"):
    """"a–b" for the smallest and largest of ``values`` (one value: "a")."""
    low, high = min(values), max(values)
    return format(low, form) if format(low, form) == format(high, form) else f"{low:{form}}–{high:{form}}"


# --------------------------------------------------------------------------- the comparison
def _error_rows(errors, sizes):
    head = "| approximation | whole F | " + " | ".join(f"layer {i + 1} ({n:,})" for i, n in enumerate(sizes)) + " |"
    rows = [head, "|---" * (len(sizes) + 2) + "|"]
    for name, error in errors.items():
        rows.append(f"| {name} | {error['total']:.3f} | " + " | ".join(f"{e:.3f}" for e in error["layers"]) + " |")
    return rows


def _widths(layers):
    """"256-20-10" from layer descriptions "Linear(256, 20, bias=True)", ...; None unless all are Linear."""
    if not layers or not all(layer.startswith("Linear(") for layer in layers):
        return None
    sizes = [layer[len("Linear("):].split(",")[:2] for layer in layers]
    return "-".join([sizes[0][0].strip()] + [size[1].strip() for size in sizes])


def _setting(compared):
    args, setup, training = compared["arguments"], compared["setup"], compared["training"]
    widths = _widths(setup["layers"])
    return [
        f"The network: `{args['model']}`" + (f", fully connected {widths}" if widths else "") + " "
        f"(P = {compared['parameters']:,} parameters, weights and biases) on `{args['dataset']}`, trained "
        f"for {training['epochs']} epochs of Adam (test accuracy {100 * training['accuracy']:.1f}%): "
        "partially trained, as in Martens & Grosse 2015, whose network and data (MNIST digits shrunk to "
        "16×16 pixels for `mnist16`) these are.", "",
        f"**The Fisher F** ({compared['parameters']:,} × {compared['parameters']:,}) is the average over "
        f"N = {setup['examples']:,} training examples of the outer product of the log-likelihood's gradient, "
        f"with the targets drawn from the network's own predictions ({setup['kind']} Fisher): "
        "F = (1/N) Σₙ E_{y∼p(y|xₙ)}[∇log p ∇log pᵀ]. It is the curvature of the natural gradient F⁻¹∇. "
        "minikfac computes it exactly here (float64), which only a network this small allows. Each "
        "**approximation F̂** replaces it by something cheaper to store and to invert:", "",
        "- **K-FAC** (F̃): one block A ⊗ G per layer and zeros between layers; A is the mean of ā āᵀ over "
        "the layer's inputs a with a 1 appended (ā = [a; 1]), G the mean of g gᵀ over the gradients g of "
        "−log p(y|x) with respect to the layer's outputs, the targets y drawn from the predictions as for F;",
        "- **K-FAC tridiagonal**: Martens & Grosse's second approximation, which also keeps the blocks "
        "between neighbouring layers: it models each layer's gradients as depending on the previous "
        "layer's only (a *chain*), which makes its inverse block-tridiagonal;",
        "- **EKFAC**: K-FAC's eigenvectors, with the eigenvalues fitted again to the per-example "
        "gradients (George et al. 2018);",
        "- **diagonal**: the diagonal of F alone;",
        "- **block-diagonal**: F's exact diagonal blocks, one per layer — the best any method that "
        "treats layers separately could do.", ""] + _family(compared["errors"])


#: The Kronecker family's rows, defined where the report first shows them (:mod:`minikfac.curvature.shampoo`).
FAMILY = {
    "Shampoo²": "R ⊗ L per layer, Shampoo's statistics L = mean of G Gᵀ and R = mean of Gᵀ G over the "
                "per-example gradient matrices G = g āᵀ, scaled per layer at its best (Gupta et al. 2018; "
                "Morwani et al. 2024: one power-iteration step towards the nearest Kronecker product)",
    "Shampoo": "R^½ ⊗ L^½, what Shampoo's step L^(-1/4) ∇W̄ R^(-1/4) inverts, scaled per layer at its best",
    "SOAP": "EKFAC's re-fitted diagonal in the eigenbasis of Shampoo's L and R instead of K-FAC's A and G "
            "(Vyas et al. 2024)",
    "nearest Kronecker": "each exact block's best Kronecker product, the floor under every approximation "
                         "of this form (Van Loan & Pitsianis 1993)",
}


def _family(errors):
    """Bullets defining the Kronecker family's rows that ``errors`` has (none: an empty list)."""
    rows = [name for name in FAMILY if name in errors]
    if not rows:
        return []
    return (["K-FAC's relatives, one block per layer as well (tutorial 13):", ""]
            + [f"- **{name}**: {FAMILY[name]};" for name in rows] + [""])


def _error_section(compared):
    errors, sources, setup = compared["errors"], compared["sources"], compared["setup"]
    kfac = errors.get("K-FAC", {}).get("total")
    lines = ["### How far each approximation is from F", "",
             "**Read the table as** relative Frobenius errors ‖F − F̂‖/‖F‖ (the square root of the summed "
             "squared entries of the difference, divided by that of F): 0 is exact, 1 is as far as the zero "
             "matrix. The layer columns are the same error on each layer's diagonal block (its number of "
             "parameters in parentheses).", ""]
    lines += _error_rows(errors, setup["layer_sizes"])
    lines += ["", f"**What it shows.** Even F's exact diagonal blocks are {sources['cross_layer']:.3f} away: "
              "that much of F lies in the blocks *between* layers, which every block-diagonal method drops. "
              f"Within each block, K-FAC's assumption that a layer's inputs and output gradients are "
              f"independent costs {sources['independence']['total']:.3f} more (of ‖F‖); of that, "
              f"{sources['best_kronecker']['total']:.3f} no method could avoid with one Kronecker product per "
              "block: the best Kronecker product of each block is that far, since a block is not a Kronecker "
              "product."
              + (f" The two parts are orthogonal (the dropped blocks and the kept ones share no entry), so "
                 f"they add in squares: √({sources['cross_layer']:.3f}² + {sources['independence']['total']:.3f}²) "
                 f"= {(sources['cross_layer'] ** 2 + sources['independence']['total'] ** 2) ** 0.5:.3f}, "
                 f"K-FAC's total {kfac:.3f}." if kfac is not None else "")
              + (f" The diagonal is almost as far as zero ({errors['diagonal']['total']:.3f}): F's mass is "
                 "off its diagonal." if "diagonal" in errors else ""), ""]
    lines += [f"> {note}" for note in compared.get("notes", [])] + ([""] if compared.get("notes") else [])
    return lines


def _cosine_section(compared):
    setup, cosines = compared["setup"], compared["cosines"]
    spectrum = compared.get("spectra", {}).get("exact")
    below = "" if spectrum is None else (
        f" ({int(np.sum(np.asarray(spectrum) < setup['damping'])):,} of F's {len(spectrum):,} eigenvalues are "
        "below it)")
    lines = ["### How close each step is to the natural gradient", "",
             f"Each approximation's step is (F̂ + λI)⁻¹∇, where ∇ is the gradient of the loss on the N examples "
             f"and **λ = {setup['damping']:g} is the damping**: a multiple of the identity added before "
             f"inverting, because F itself is singular or nearly so{below}. **Factored damping** is K-FAC's own "
             "way of adding it: π√λ·I to A and (√λ/π)·I to G, instead of λI to A ⊗ G, with "
             "π = √((tr A / dim A) / (tr G / dim G)) balancing the two factors' scales (Martens & Grosse 2015, "
             "§6.3). The table gives the cosine of each step with the exact natural gradient "
             "(F + λI)⁻¹∇: 1 is the same direction, 0 a right angle.", "",
             "| direction | cosine |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in cosines.items()]
    kfac, gradient = cosines.get("K-FAC"), cosines.get("gradient")
    if kfac is not None and gradient is not None:
        lines += ["", f"**What it shows.** K-FAC's step is far from the exact one (cosine {kfac:.3f}, an angle "
                      f"of {np.degrees(np.arccos(kfac)):.0f}°), though nearer than the gradient "
                      f"({gradient:.3f}, {np.degrees(np.arccos(gradient)):.0f}°). A cosine measures agreement with "
                      "the damped exact step, not progress: at a small λ that step can itself be a poor direction. "
                      "Tutorial 08, on a smaller network, gives every direction its best length and measures the "
                      "loss it buys: there the exact (F + λI)⁻¹∇, cosine 1 by definition, bought the least of the "
                      "Fisher-based directions at λ = 1e-3, while among the approximations a higher cosine did go "
                      "with a larger decrease."]
    return lines + [""]


def _figure_2(compared):
    layers = ", ".join(str(i) for i in compared.get("figure_layers", []))
    return ["### Fig. 2 of Martens & Grosse 2015: F and K-FAC, entry by entry", "",
            "![exact Fisher vs K-FAC](fisher_vs_kfac.png)", "",
            f"**Read it as** three heat maps of absolute values on layers {layers} (the grid lines separate "
            "the layers; white is large, at or above the 98% quantile of |F|): |F|, K-FAC's |F̃| built with "
            "every cross-layer block A_ij ⊗ G_ij as in the paper (A_ij the mean of ā_i ā_jᵀ over the inputs of "
            "layers i and j, G_ij that of g_i g_jᵀ; the optimizer itself keeps only the diagonal blocks "
            "i = j), and |F − F̃|. **What it shows:** K-FAC gets the coarse structure right — which blocks "
            "are large, and the stripes inside each block that come from A — while the detail within each "
            "block differs; the difference is spread over the whole matrix, as the error table says.", ""]


def _figure_3(compared):
    text = ("**Read it as** F̃ (left), its inverse (middle) and, right, the mean |entry| of each block of the "
            "inverse divided by the largest. The paper's case for approximating the *inverse* as block-diagonal "
            "or block-tridiagonal is that it concentrates on the diagonal blocks and their neighbours even "
            "where F̃ itself does not.")
    means = compared.get("inverse_block_means")
    if means:
        sizes = [compared["setup"]["layer_sizes"][layer - 1] for layer in compared.get("figure_layers", [])]
        text += " **What it shows:** " + _inverse_takeaway(np.asarray(means), sizes or None)
    return ["### Fig. 3 of Martens & Grosse 2015: K-FAC's inverse", "",
            "![K-FAC and its inverse](inverse_structure.png)", "", text, ""]


def _inverse_takeaway(means, sizes=None):
    """Sentences on the (B, B) normalised block means of F̃⁻¹ (blocks of ``sizes`` parameters), from the numbers."""
    count = len(means)
    distance = np.abs(np.subtract.outer(np.arange(count), np.arange(count)))
    diagonal, near, far = means[distance == 0], means[distance == 1], means[distance >= 2]
    parts = [f"{_span(diagonal)} on the diagonal"] + ([f"{_span(near)} next to it"] if near.size else []) \
        + ([f"{_span(far)} two or more layers away"] if far.size else [])
    text = f"on this network the block means are {', '.join(parts)}."
    # Each block's share of the inverse's summed |entries|: its mean times its number of entries.
    sizes = np.ones(count) if sizes is None or len(sizes) != count else np.asarray(sizes, dtype=float)
    mass = means * np.outer(sizes, sizes)
    shares = [100 * mass[distance == 0].sum() / mass.sum(), 100 * mass[distance <= 1].sum() / mass.sum()]
    off = np.where(distance == 0, -np.inf, means)
    if np.all(diagonal > off.max(axis=1)):
        text += " In every row of blocks the diagonal block is the largest"
    else:
        text += " Not every diagonal block is the largest of its row"
    text += (f"; the diagonal blocks hold {shares[0]:.0f}% of the inverse's summed |entries| and the "
             f"block-tridiagonal band {shares[1]:.0f}%.")
    if diagonal.min() < 0.5 * diagonal.max():
        text += (f" The diagonal blocks themselves differ by {diagonal.max() / diagonal.min():.0f}× from layer to "
                 "layer, so a layer's own block can be smaller than another layer's neighbour block.")
    return text


def _spectra(compared):
    spectra = compared.get("spectra") or {}
    if "exact" not in spectra or "K-FAC" not in spectra:
        return []
    exact, kfac = (np.sort(np.asarray(spectra[name], dtype=float))[::-1] for name in ("exact", "K-FAC"))
    damping, size = compared["setup"]["damping"], exact.size
    damped = (np.maximum(kfac, 0) + damping) / (np.maximum(exact, 0) + damping)
    flat, steep = int(np.sum(exact < damping)), int(np.sum(kfac >= damping))
    common = flat + steep - size
    text = ("**Read it as** each matrix's eigenvalues sorted from the largest, against their rank, on log-log "
            "axes (eigenvalues at the rounding level, zeros in exact arithmetic, are left out; the legend "
            "counts them). **What it shows:** the largest eigenvalues agree, but K-FAC's tail lies far above "
            f"F's. Rank by rank, with λ = {damping:g} added to both, F̃'s spectrum is up to {damped.max():.1f}× "
            f"F's (at rank {int(np.argmax(damped)) + 1:,}). Ranks are not directions, but a count gives "
            f"directions: F has {flat:,} eigenvalues below λ and F̃ has {steep:,} at or above it, out of "
            f"{size:,}")
    if common > 0:
        text += (f", so in a subspace of at least {flat:,} + {steep:,} − {size:,} = {common:,} dimensions F "
                 "sees less curvature than λ and F̃ at least λ. In K-FAC's quadratic model a step along such a "
                 "direction u costs more than in the exact damped one (uᵀ(F̃ + λI)u ≥ 2λ‖u‖² against "
                 "uᵀ(F + λI)u < 2λ‖u‖²): K-FAC carries damping of its own there, on top of λ, and that is one "
                 "way its steps differ from the natural gradient's.")
    else:
        text += ": too few for the two to be sure to share a direction where F is flat and F̃ is not."
    return ["### The eigenvalues", "", "![Eigenvalues of F and its approximations](spectra.png)", "", text, ""]


def _monte_carlo(compared):
    mc = compared.get("monte_carlo")
    if not mc:
        return []
    k, kfac = mc["samples"], mc["kfac"]["total"]
    lines = ["### Monte-Carlo noise", "", "![Monte-Carlo noise: error against the number of samples](monte_carlo.png)",
             "", "The K-FAC optimizer does not take the expectation over targets exactly: it draws k targets "
             "per example from the network's predictions (the Monte-Carlo Fisher). **Read it as** the relative "
             "error against F as k grows, log-log; the dashed line falls as 1/√k, the rate of an average of "
             "independent samples. **What it shows:**"]
    if mc.get("fisher"):
        fisher = mc["fisher"]["total"]
        lines[-1] += (f" the Monte-Carlo Fisher's own error falls from {fisher[0]:.3f} at k = {k[0]} to "
                      f"{fisher[-1]:.3f} at k = {k[-1]}, as 1/√k;")
    lines[-1] += (f" K-FAC built from k samples stays at {_span(kfac, '.3f')} for every k: its error is its "
                  "structure's, not the sampling's, so by this measure one sample per example is nearly as good "
                  "as many. The measure is the Frobenius error, which the large entries dominate; the sampling "
                  "noise in G's small eigenvalues, which F̃⁻¹ magnifies, does not show in it.")
    return lines + [""]


# --------------------------------------------------------------------------- the race
def _race_rows(result):
    classify = result["problem"]["task"] == "classification"
    rows = ["| run | steps to target | seconds to target | final training loss | "
            + ("test accuracy" if classify else "test squared error") + " | ms per step |",
            "|---|---|---|---|---|---|"]
    best = set(result["best"].values())
    for i, run_ in enumerate(result["runs"]):
        test = run_["test"]
        metric = (format_or_dash(None if test.get("accuracy") is None else 100 * test["accuracy"], ".2f") + "%" if classify
                  else format_or_dash(test.get("squared_error"), ".2f"))
        label = f"**{run_['label']}**" if i in best else run_["label"]
        rows.append(f"| {label} | {format_or_dash(run_['steps_to_target'], 'd')} | {format_or_dash(run_['seconds_to_target'], '.3g')} "
                    f"| {run_['final_train_loss']:.4g} | {metric} | {1e3 * run_['seconds_per_step']:.1f} |")
    return rows


def race_section(race_report):
    """The race's per-problem sections: the setting, the table, K-FAC's ratios to Adam, the figure."""
    lines = []
    for name, result in race_report["problems"].items():
        problem = result["problem"]
        lines += [f"### {name}", "",
                  f"{problem['model']} on {problem['dataset']} ({result['train_examples']:,} training examples), "
                  f"batch {problem['batch_size']}, {result['epochs']} epochs; target training loss "
                  f"{problem['target_loss']:g} (mean over a fixed subset, measured with the clock stopped)"
                  + ("; each run stops when it reaches the target, so its final loss and test score are "
                     "those at that point" if result.get("stopped_at_target") else "")
                  + ". Bold: each method's best run; —: never reached the target.", ""]
        lines += _race_rows(result)
        versus = result["kfac_vs"].get("adam")
        if versus and versus["iterations"] is None:
            lines += ["", "K-FAC did not reach the target within the budget."]
        elif versus:
            lines += ["", f"K-FAC ÷ best Adam: **{upper_bound_mark(versus)}{versus['iterations']:.2f}× the iterations**, "
                          f"**{upper_bound_mark(versus)}{format_or_dash(versus['seconds'], '.2f')}× the seconds** to the target"
                          + (" (Adam never reached it: an upper bound)" if versus["upper_bound"] else "") + "."]
        lines += ["", f"![race on {name}](race_{name}.png)", "",
                  "**Read the figure as** the training loss (log scale, measured in eval mode: no caches, "
                  "the same fixed subset each time) against iterations (left) and against seconds of training "
                  "(right), one curve per run, with the target as a dashed line. The dot on each curve is the "
                  "first measurement at or below the target (the curves join the measurements with straight "
                  "lines, so they can cross the target a little before it). Compare the dots in the two panels: "
                  "the left panel is what each step buys, the right what it costs on this machine.", ""]
    return lines


def markdown(report, comparison_table=None, race_table=None):
    """``summary.md``'s text from a :func:`minikfac.jobs.demo.run` report (the tables as printed in an appendix)."""
    compared, raced = report["comparison"], report["race"]
    quick = " (quick: a smoke test, the numbers mean nothing)" if report["settings"]["quick"] else ""
    lines = [f"# minikfac demo{quick}", "",
             f"minikfac {report['settings']['minikfac']}, Python {report['settings']['python']}, NumPy "
             f"{report['settings']['numpy']}, seed {report['settings']['seed']}; "
             f"{report['seconds']['total']:.0f} s in all.", "",
             "Two parts: how far K-FAC and its relatives are from the exact Fisher matrix of a small network, "
             "and how K-FAC trains against Adam. Each table and figure below says how to read it and what it "
             "shows.", "", "## 1. Exact Fisher vs K-FAC", ""]
    lines += _setting(compared) + _error_section(compared) + _cosine_section(compared)
    lines += _figure_2(compared) + _figure_3(compared) + _spectra(compared) + _monte_carlo(compared)
    lines += ["## 2. The race: K-FAC vs Adam", "",
              "Each run trains the same network from the same weights on the same batches; an **iteration** "
              "(step) uses one batch. **Seconds** count training only, on this machine (the loss is measured "
              "with the clock stopped). The **target** is a training loss every method is asked to reach; a "
              "run's steps to target is the first measurement at or below it. **lr** is the learning rate. "
              "K-FAC runs with its defaults, untuned; Adam is the best of three learning rates (on the "
              "autoencoder only the best of them runs: `minikfac bench` shows the other two never reach the "
              "target).", "",
              "On the two small classifiers, on a CPU, K-FAC's extra work per step (its statistics, its "
              "inverses, its quadratic model of the loss, and its guard, which evaluates the loss again after "
              "each step and undoes a step that raised it more than the model allows) can cost more seconds "
              "than its fewer iterations save. The MNIST autoencoder — deep, with a long plateau for "
              "first-order methods, its work per step dominated by large matrix products — is the classic "
              "K-FAC problem.", ""]
    lines += race_section(raced)
    if comparison_table or race_table:
        lines += ["## Appendix: the tables as printed", ""]
        for text in (comparison_table, race_table):
            if text:
                lines += ["```", text, "```", ""]
    lines += ["## Time", "", ", ".join(f"{name} {value:.1f} s" for name, value in report["seconds"].items()), ""]
    return "\n".join(lines)
