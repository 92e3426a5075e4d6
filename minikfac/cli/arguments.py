"""The command line's vocabulary: argument types, the bundled names, the K-FAC options, JSON output.

Each argument type rejects a bad value with a message argparse prints
("--epochs: expected an integer >= 1, got '0'"). The K-FAC options' defaults
are read from :class:`minikfac.optim.KFAC` itself (:func:`default_of`), and
:func:`flag_of` names the flag of a run argument, so that errors raised by the
library (:class:`minikfac.jobs.train.RunArgumentError`) can name flags.
"""

import argparse
import os

from minikfac import models, training
from minikfac.curvature.statistics import KINDS
from minikfac.jobs import train as train_job
from minikfac.jobs import race_tracks
from minikfac.optim.kfac import PRECONDITIONERS, UPDATES

DATASETS = ("digits", "mnist", "mnist16")
MODELS = models.MODELS
#: The models trained on labels (compare's Fisher is that of a classifier).
CLASSIFIERS = tuple(name for name in MODELS if models.task(name) is models.CLASSIFICATION)
BACKENDS = ("numpy", "cupy", "fakegpu")
DTYPES = ("float32", "float64")


# --------------------------------------------------------------------------- #
# Argument types: each rejects a bad value with a message argparse prints
# --------------------------------------------------------------------------- #
def _number(kind, test, expected):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    parse.__name__ = expected  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number > 0")
nonnegative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
unit_float = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
fraction = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def int_list(text):
    """``"1,4,16"`` -> [1, 4, 16]: comma-separated integers >= 1."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1 (like 1,4,16), got {text!r}")
    return values


int_list.__name__ = "a list of integers"


def problem_list(text):
    """``"digits-mlp,mnist-cnn"`` -> a list of race problem names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in race_tracks.PROBLEMS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected comma-separated problems among {', '.join(race_tracks.PROBLEMS)}, "
                                         f"got {text!r}")
    return names


problem_list.__name__ = "a list of problems"


def default_of(key):
    """The default of run argument ``key``, as shown in ``--help``."""
    if key == "lr":
        return ("per optimizer, " + ", ".join(f"{k} {v:g}" for k, v in training.DEFAULT_LR.items())
                + "; kfac: K-FAC's own, with --kfac-update kl_clip only")
    if key == "momentum":
        return "0 for sgd; kfac: K-FAC's own, with --kfac-update kl_clip only"
    if key in train_job.KFAC_ARGS:
        return train_job.kfac_defaults()[key]
    return train_job.DEFAULTS[key]


#: Run argument -> the flag that sets it, for the K-FAC options whose flag is not simply --the-name.
KFAC_FLAGS = {"adapt_damping": ("--adapt-damping", "--no-adapt-damping"),
              "factored_damping": ("--factored-damping", "--exact-damping")}


def flag_of(key, value=None):
    """The command-line flag that sets run argument ``key`` to ``value``."""
    if key in KFAC_FLAGS:
        return KFAC_FLAGS[key][0 if value else 1]
    return "--" + key.replace("_", "-")


def add_kfac_options(train):
    """The "K-FAC options" group of ``train`` (each None unless given: K-FAC's own default)."""
    kfac = train.add_argument_group(
        "K-FAC options", "for --optimizer kfac only; citations: Martens & Grosse 2015, Optimizing neural networks "
                         "with Kronecker-factored approximate curvature")
    kfac.add_argument("--damping", type=positive_float, metavar="λ",
                      help="initial Tikhonov damping λ, adapted by the Levenberg-Marquardt rule (Martens & Grosse 2015, §6.5) "
                           f"(default: {default_of('damping')})")
    kfac.add_argument("--kfac-update", choices=UPDATES,
                      help="quadratic: step size and momentum from the quadratic model (Martens & Grosse 2015, §7); kl_clip: "
                           "--lr and --momentum, the step's KL bounded by --kl-clip (Ba et al. 2017) "
                           f"(default: {default_of('kfac_update')})")
    kfac.add_argument("--kl-clip", type=positive_float, metavar="κ",
                      help=f"KL bound of the kl_clip update (Ba et al. 2017) (default: {default_of('kl_clip')})")
    kfac.add_argument("--max-momentum", type=unit_float, metavar="μ",
                      help="the quadratic update's momentum is kept in [0, μ] "
                           f"(default: {default_of('max_momentum')})")
    kfac.add_argument("--kl-per-example", type=positive_float, metavar="κ",
                      help="the quadratic update's trust region: a step's predicted KL divergence is at most "
                           "κ × batch size × output variables per example "
                           f"(default: {default_of('kl_per_example')})")
    kfac.add_argument("--stats-fraction", type=fraction, metavar="F",
                      help="fraction of each batch (its first rows) used for the factor statistics, the quadratic "
                           f"model and the guard (Martens & Grosse 2015, §8) (default: {default_of('stats_fraction')})")
    kfac.add_argument("--min-stats-examples", type=positive_int, metavar="N",
                      help="but at least this many rows, or the whole batch "
                           f"(default: {default_of('min_stats_examples')})")
    kfac.add_argument("--inverse-interval", type=positive_int, metavar="T",
                      help="steps between refreshes of the damped factors' inverses, or of the eigendecompositions "
                           "with --exact-damping or ekfac (Martens & Grosse 2015, §8); factored damping also refreshes when λ moves "
                           f"by 2× (default: {default_of('inverse_interval')})")
    kfac.add_argument("--factor-decay", type=unit_float, metavar="ε",
                      help="decay of the running averages of A and G, min(1 - 1/k, ε) at step k (Martens & Grosse 2015, §5) "
                           f"(default: {default_of('factor_decay')})")
    kfac.add_argument("--kfac-kind", choices=KINDS,
                      help="the statistics of G: mc, targets sampled from the model (Martens & Grosse 2015, §5); true, the exact "
                           "expectation; empirical, the data labels (a different matrix: Kunstner et al. 2019); "
                           f"ggn (default: {default_of('kfac_kind')})")
    adapt = kfac.add_mutually_exclusive_group()
    adapt.add_argument("--adapt-damping", dest="adapt_damping", action="store_const", const=True,
                       help="adapt λ by the Levenberg-Marquardt rule (Martens & Grosse 2015, §6.5) (the default)")
    adapt.add_argument("--no-adapt-damping", dest="adapt_damping", action="store_const", const=False,
                       help="keep λ fixed")
    style = kfac.add_mutually_exclusive_group()
    style.add_argument("--exact-damping", dest="factored_damping", action="store_const", const=False,
                       help="exact Tikhonov damping, (A⊗G + λI)⁻¹ in the eigenbasis (the default for ekfac)")
    style.add_argument("--factored-damping", dest="factored_damping", action="store_const", const=True,
                       help="factored Tikhonov damping, (A + π√λ I) ⊗ (G + √λ/π I) (Martens & Grosse 2015, §6.3; the default for kfac)")
    kfac.add_argument("--preconditioner", choices=PRECONDITIONERS,
                      help="kfac, or ekfac: K-FAC's eigenbasis with re-estimated scalings (George et al. 2018) "
                           f"(default: {default_of('preconditioner')})")


def _nearest_existing(path):
    """The path itself if it exists, else its nearest existing parent folder."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_output(parser, flag, path, folder=False):
    """Before any work: exit 2 with one line unless ``path`` can be written as a file (or, with
    ``folder``, created or written as a folder). None (the option not given) passes."""
    if path is None:
        return
    existing = _nearest_existing(path)
    target_exists = existing == os.path.abspath(path)
    if target_exists and folder and not os.path.isdir(path):
        parser.error(f"{flag}: {path!r} is a file; expected a folder to write into")
    if target_exists and not folder and os.path.isdir(path):
        parser.error(f"{flag}: {path!r} is a folder; expected the path of a file")
    where = existing if (target_exists and folder) or not target_exists else os.path.dirname(existing)
    if not os.path.isdir(where):
        parser.error(f"{flag}: cannot create {path!r}: {where!r} is a file, not a folder")
    if not os.access(where, os.W_OK | os.X_OK) or (target_exists and not os.access(path, os.W_OK)):
        parser.error(f"{flag}: cannot write {path!r}: {'it' if target_exists else repr(where)} is not writable")


