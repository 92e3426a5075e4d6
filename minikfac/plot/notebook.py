"""Tutorials' figures: save, and display where a display exists."""

import os


#: Where :func:`show` saves figures unless told otherwise (``make tutorials`` and the tests set it).
FIGURES_ENV = "MINIKFAC_FIGURES"
DEFAULT_FIGURES = os.path.join("report", "tutorials")


def default_folder(cwd=None):
    """Where a tutorial's figures go when neither ``out`` nor ``$MINIKFAC_FIGURES`` says.

    ``report/tutorials`` under the working directory — except in a ``tutorials``
    folder itself (where a notebook server runs a notebook it opened), whose
    figures go to ``../report/tutorials``, beside the scripts' figures, not into
    ``tutorials/report/``.
    """
    cwd = os.path.abspath(cwd or os.getcwd())
    if os.path.basename(cwd) == "tutorials":
        return os.path.join(os.path.dirname(cwd), DEFAULT_FIGURES)
    return DEFAULT_FIGURES


def show(fig, name, out=None):
    """Save a tutorial's figure as ``out/name.png`` and display it where a display exists.

    Tutorials draw with ``matplotlib.pyplot`` like any notebook; this is their
    last line for each figure. In a notebook (an interactive or inline backend)
    the figure is shown below the cell; run as a script (Agg, headless) it is
    only saved, then closed so that long scripts do not hold every figure.

    Args:
        fig: a :class:`matplotlib.figure.Figure`.
        name: file name without extension, e.g. ``"01_kronecker_product"``.
        out: the folder; default ``$MINIKFAC_FIGURES``, else ``report/tutorials``
            under the working directory (under its parent when the working
            directory is ``tutorials/``, as in a notebook opened there; see
            :func:`default_folder`), created if missing.

    Returns:
        The path of the PNG written.
    """
    if not isinstance(name, str) or not name or os.sep in name:
        raise ValueError(f"show: name must be a non-empty file name without a folder, got {name!r}")
    import matplotlib
    import matplotlib.pyplot as plt  # tutorials only: the rest of this module never touches pyplot

    folder = out if out is not None else os.environ.get(FIGURES_ENV) or default_folder()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if matplotlib.get_backend().lower() in ("agg", "pdf", "ps", "svg", "cairo", "template"):
        plt.close(fig)
        print(f"[figure saved: {path}]")
    else:
        plt.show()
    return path
