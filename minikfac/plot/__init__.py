"""Figures, drawn headless with matplotlib's Agg renderer.

This is the only package of the library that imports matplotlib, and only the
jobs and the command line import it (when a figure is asked for), so training
on a server never needs a display or even matplotlib's import time.

===================  ==============================================================
:mod:`.curves`       the training loss, spectra, Monte-Carlo errors, scaling laws
:mod:`.matrices`     heatmaps of F, F̃ and F̃⁻¹ (Martens & Grosse 2015, Figs. 2, 3)
:mod:`.race`         the race's curves and the step cost
:mod:`.calibration`  reliability diagrams, OOD-score histograms
:mod:`.notebook`     :func:`show`, the tutorials' save-and-display
===================  ==============================================================

We build :class:`matplotlib.figure.Figure` objects directly instead of going
through ``pyplot``: ``Figure.savefig`` renders with Agg, and the user's own
pyplot backend (a notebook's inline backend, say) is left untouched. The one
exception is :func:`show`, the tutorials' "save and display" for figures they
drew with pyplot themselves.
"""

from minikfac.plot.curves import loss_curve, monte_carlo_error, scaling_loglog, spectra
from minikfac.plot.matrices import block_means, damped_inverse, fisher_vs_kfac, inverse_structure
from minikfac.plot.notebook import DEFAULT_FIGURES, FIGURES_ENV, show
from minikfac.plot.race import METHOD_COLORS, race_curves, race_figures, step_cost

__all__ = ["DEFAULT_FIGURES", "FIGURES_ENV", "METHOD_COLORS", "block_means", "damped_inverse", "fisher_vs_kfac",
           "inverse_structure",
           "loss_curve", "monte_carlo_error", "race_curves", "race_figures", "scaling_loglog", "show", "spectra",
           "step_cost"]
