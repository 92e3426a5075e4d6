"""The backend switch and the strict stand-in that lets CPU-only tests prove separation."""

import pathlib
import re

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend, fakegpu
from tests.conftest import GPU

PACKAGE = pathlib.Path(mk.__file__).parent


def test_set_and_get_backend_and_dtype():
    assert mk.get_backend() == "numpy" and mk.get_default_dtype() == np.float64
    mk.set_backend("fakegpu")
    assert mk.get_backend() == "fakegpu"
    assert backend.backend_of(mk.nn.Linear(2, 2).weight.data) == "fakegpu"
    mk.set_default_dtype("float32")
    assert mk.nn.Linear(2, 2).weight.data.dtype == np.float32
    with pytest.raises(ValueError, match=r"backend must be one of .* got 'torch'"):
        mk.set_backend("torch")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'int8'"):
        mk.set_default_dtype("int8")
    for bad in (None, "bogus", np.int32):
        with pytest.raises(ValueError, match="dtype must be"):
            mk.set_default_dtype(bad)
    assert mk.get_backend() == "fakegpu" and mk.get_default_dtype() == np.float32  # nothing changed


@pytest.mark.skipif(GPU, reason="this machine has a GPU")
def test_cupy_without_gpu_says_why_and_how_to_fix():
    with pytest.raises(RuntimeError, match=r"backend 'cupy'.*(pip install|nvidia-smi|no CUDA)"):
        mk.set_backend("cupy")
    assert mk.get_backend() == "numpy"


def test_get_array_module_names_both_backends_when_mixed():
    d = backend.asarray(np.ones((2, 3)), backend="fakegpu")
    assert backend.get_array_module(d, 1.0, None, np.float32(2)) is fakegpu
    assert backend.get_array_module(np.ones(2)) is np
    with pytest.raises(ValueError, match=r"argument 0 is a fakegpu array of shape \(2, 3\).*"
                                         r"argument 1 is a numpy array of shape \(4,\)"):
        backend.get_array_module(d, np.ones(4))


def test_asarray_and_to_numpy_move_copies():
    host = np.arange(6.0).reshape(2, 3)
    d = mk.asarray(host, backend="fakegpu", dtype="float32")
    assert backend.backend_of(d) == "fakegpu" and d.dtype == np.float32
    host[0, 0] = 99  # the device copy is independent
    back = mk.to_numpy(d)
    assert isinstance(back, np.ndarray) and back[0, 0] == 0
    assert mk.asarray(d, backend="fakegpu") is d
    np.testing.assert_array_equal(mk.to_numpy(mk.asarray([[1, 2]])), [[1, 2]])


@pytest.mark.parametrize("misuse", [
    lambda d: np.exp(d),  # a NumPy function on a device array
    lambda d: np.sum(d),
    lambda d: np.asarray(d),  # implicit conversion
    lambda d: d + np.ones(3),  # mixing, both orders
    lambda d: np.ones(3) * d,
    lambda d: fakegpu.asarray(np.ones(3)),  # a hidden host-to-device copy
    lambda d: d[np.array([0])],  # host index array
])
def test_fakegpu_refuses_what_would_break_on_a_gpu(misuse):
    d = backend.asarray(np.ones(3), backend="fakegpu")
    with pytest.raises(TypeError):
        misuse(d)


def test_fakegpu_behaves_like_cupy_where_allowed():
    d = backend.asarray(np.arange(6.0).reshape(2, 3), backend="fakegpu")
    total = d.sum()
    assert isinstance(total, fakegpu.DeviceArray) and total.ndim == 0  # 0-d, not a NumPy scalar
    assert float(total) == 15.0
    np.testing.assert_array_equal((2.0 * d + np.float32(1)).get(), 2 * np.arange(6.0).reshape(2, 3) + 1)
    w, v = fakegpu.linalg.eigh(d @ d.T)
    assert isinstance(w, fakegpu.DeviceArray) and isinstance(v, fakegpu.DeviceArray)
    rng = backend.default_rng(0, like=d)
    assert isinstance(rng.random((2,)), fakegpu.DeviceArray)
    d[:, 0] += 10
    assert float(d[1, 0]) == 13.0


def test_only_backend_imports_cupy():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "backend.py":
            continue
        if re.search(r"^\s*(import cupy|from cupy)", path.read_text(), flags=re.M):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


@pytest.mark.gpu
def test_cupy_layers_match_numpy():
    net = mk.nn.Sequential(mk.nn.Conv2d(1, 2, 3, padding=1), mk.nn.ReLU(), mk.nn.MaxPool2d(2),
                           mk.nn.Flatten(), mk.nn.Linear(8, 3))
    x = np.random.default_rng(0).standard_normal((4, 1, 4, 4))
    expected = net(x)
    net.backward(np.ones_like(expected))
    grads = [p.grad.copy() for p in net.parameters()]
    net.to("cupy").zero_grad()
    out = net(mk.asarray(x, backend="cupy"))
    net.backward(mk.asarray(np.ones_like(expected), backend="cupy"))
    np.testing.assert_allclose(mk.to_numpy(out), expected, rtol=1e-12, atol=1e-12)
    for g, p in zip(grads, net.parameters()):
        np.testing.assert_allclose(mk.to_numpy(p.grad), g, rtol=1e-12, atol=1e-12)


def test_using_sets_and_restores_the_backend_and_dtype_also_after_an_error():
    before = backend.get_backend(), backend.get_default_dtype()
    with backend.using("fakegpu", "float32"):
        assert backend.get_backend() == "fakegpu" and backend.get_default_dtype() == np.float32
        with backend.using(dtype="float64"):  # only the dtype changes
            assert backend.get_backend() == "fakegpu" and backend.get_default_dtype() == np.float64
        assert backend.get_default_dtype() == np.float32
    assert (backend.get_backend(), backend.get_default_dtype()) == before
    with pytest.raises(RuntimeError, match="inside"):
        with backend.using("fakegpu", "float32"):
            backend.set_backend("numpy")  # whatever the block sets is undone too
            raise RuntimeError("inside")
    assert (backend.get_backend(), backend.get_default_dtype()) == before
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        with backend.using("fakegpu", "float16"):
            pass
    assert (backend.get_backend(), backend.get_default_dtype()) == before
