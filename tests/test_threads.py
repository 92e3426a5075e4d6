"""BLAS threads: the library's small factorisations run with one thread, and give the same results."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from minikfac import threads
from minikfac.curvature.linalg import damped_inverse, psd_eigh
from tests.conftest import on


def blas_threads():
    """The number of threads each loaded BLAS library would use now (threadpoolctl's view)."""
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    """BLAS at two threads for the test, whatever the environment set (make test sets one)."""
    with threadpool_limits(2, user_api="blas"):
        assert blas_threads() and all(n == 2 for n in blas_threads())
        yield


def test_limit_sets_one_thread_inside_and_restores_outside(two_threads):
    with threads.limit(1):
        assert all(n == 1 for n in blas_threads())
    assert all(n == 2 for n in blas_threads())


def test_for_matrix_limits_small_numpy_matrices_only(backend_name, two_threads):
    small = on(backend_name, np.eye(threads.SMALL_MATRIX - 1))
    large = on(backend_name, np.eye(threads.SMALL_MATRIX))
    with threads.for_matrix(small):
        assert all(n == (1 if backend_name == "numpy" else 2) for n in blas_threads())
    with threads.for_matrix(large):
        assert all(n == 2 for n in blas_threads())


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_limit_refuses_a_bad_count(bad):
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        with threads.limit(bad):
            pass


def test_results_do_not_depend_on_the_threads(two_threads):
    """eigh and the Cholesky inverse of a factor, inside the library's limit (one thread) and with two
    threads: the same numbers (to rounding)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 200))
    S = X.T @ X / 300
    values, vectors = psd_eigh(S)
    inverse = damped_inverse(S, 0.1)
    default_values = np.linalg.eigh(S)[0]
    default_inverse = np.linalg.inv(S + 0.1 * np.eye(200))
    np.testing.assert_allclose(values, np.maximum(default_values, 0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inverse, default_inverse, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose((vectors * values) @ vectors.T, S, atol=1e-10)


def test_training_steps_run_with_one_blas_thread(two_threads, monkeypatch):
    """train_step and KFAC.step see one BLAS thread inside, and the machine's threads are back after."""
    import minikfac as mk
    from minikfac import training

    seen = []
    real_backward = mk.nn.Sequential.backward

    def backward(self, *args, **kwargs):
        seen.append(blas_threads())
        return real_backward(self, *args, **kwargs)

    monkeypatch.setattr(mk.nn.Sequential, "backward", backward)
    net = mk.nn.Sequential(mk.nn.Linear(4, 3))
    loss_fn = mk.nn.CrossEntropyLoss()
    X, y = np.random.default_rng(0).normal(size=(8, 4)), np.arange(8) % 3
    for optimizer in (mk.optim.SGD(net.parameters(), lr=0.1), mk.optim.KFAC(net, loss_fn)):
        training.train_step(net, loss_fn, optimizer, X, y)
    assert len(seen) >= 3 and all(all(n == 1 for n in threads_now) for threads_now in seen)  # K-FAC's pass too
    assert all(n == 2 for n in blas_threads())
