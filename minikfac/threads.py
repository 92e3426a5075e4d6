"""BLAS threads: one for small dense linear algebra, so that a busy machine does not stall it.

NumPy hands matrix work to a BLAS/LAPACK library (OpenBLAS in NumPy's wheels),
which splits every call among one thread per core. That pays for a large matrix
product. For the eigendecomposition or the inverse of a K-FAC factor of a few
hundred rows it backfires: LAPACK makes thousands of small calls, each split
among threads that must all finish before the next call starts, and when
another process keeps a core busy, the thread that lost its core holds the
others up for a whole scheduler time slice, call after call. Measured on 2
cores with one of them kept busy by another process (float32): ``eigh`` of a
101×101 matrix took 300 ms with two threads and 0.7 ms with one; of a
785×785 matrix 138 ms with two and 162 ms with one (and 53 against 76 ms with
both cores free, where threads do help).

A training step of the nets this library trains is made of such calls too:
products of a few hundred rows and columns, many of them per step. Measured on
the autoencoder at batch 256 (ms per step, one thread / two threads): Adam 8.1
/ 7.0 with both cores free and 8.4 / 19.8 with one kept busy; K-FAC 35.9 /
45.0 free (its many small products lose even then) and 35.3 / 105 busy. Only
large dense work gains: ``eigvalsh`` of a 3,000×3,000 matrix takes 2.1 s with
one thread and 1.2 s with two on free cores (3.6 s with two, 2.1 s with one,
when a core is busy).

So the library runs the factorisations of matrices smaller than
:data:`SMALL_MATRIX` (:func:`for_matrix`) and every training step
(:func:`for_step`: ``KFAC.step``, and ``training.train_step``, which the
command line, the race and the demo use) with one BLAS thread, through
threadpoolctl, the standard library for exactly this; large dense work (the
exact Fisher of the comparisons) keeps the machine's threads. Users set
nothing; results do not change (the same routines run, in one thread). A
loop of your own gets the same with ``with minikfac.threads.for_step(): ...``
around each step. On CuPy arrays this does nothing: the GPU has no BLAS
thread pool.
"""

import contextlib

from threadpoolctl import ThreadpoolController

from minikfac import backend

#: Matrices with fewer rows than this are factorised with one BLAS thread (see the module docstring).
SMALL_MATRIX = 512

_controller = None


def _blas():
    """The process's threadpoolctl controller (built once: looking up the loaded libraries costs ~1 ms)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def limit(threads=1):
    """Within the block, NumPy's BLAS/LAPACK uses at most ``threads`` threads; restored afterwards.

    threads : int >= 1. Entering and leaving costs a few microseconds.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"limit: threads must be an int >= 1, got {threads!r}")
    with _blas().limit(limits=threads, user_api="blas"):
        yield


def for_step():
    """A context for one training step (forward, backward, an optimizer's step): one BLAS thread.

    See the module docstring for why; the cost of entering and leaving is a few microseconds.
    """
    return limit(1)


def for_matrix(matrix):
    """A context in which to factorise ``matrix`` (k, k): one BLAS thread if k < :data:`SMALL_MATRIX` on NumPy.

    Larger matrices, and arrays of other backends, keep the default (a null context).
    """
    if backend.backend_of(matrix) == "numpy" and matrix.shape[-1] < SMALL_MATRIX:
        return limit(1)
    return contextlib.nullcontext()
