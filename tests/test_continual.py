"""The curvature penalties of continual learning (minikfac.continual) and the permuted-digits study.

The penalty is ½ Σ_t λ N_t (θ − c_t)ᵀ F̂_t (θ − c_t); its exact cases: with the
full GGN the gradient is N·λ·F(θ − θ*), computed densely here; with K-FAC on one
example it equals the exact blocks' (K-FAC is exact at N = 1 for Linear layers).
"""

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend
from minikfac.continual import LaplacePenalty, quadratic_forms
from minikfac.curvature import assign, fisher, flatten
from minikfac.gradcheck import numerical_gradient
from minikfac.studies import permuted_digits
from tests.conftest import on

nn = mk.nn
STRUCTURES = ("full", "block", "kfac", "ekfac", "diag")


def mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))


def task(n=12, seed=0, backend_name="numpy"):
    rng = np.random.default_rng(seed)
    return on(backend_name, rng.standard_normal((n, 3))), on(backend_name, rng.integers(0, 3, n))


def moved(net, seed=5, size=0.3):
    """Shift every parameter by a random step (host-seeded), in place; returns the net."""
    theta = flatten(net)
    step = np.random.default_rng(seed).standard_normal(theta.shape[0]) * size
    assign(net, theta + backend.asarray(step, backend=backend.backend_of(theta)))
    return net


def host(x):
    return backend.to_numpy(x)


def relative(a, b):
    a, b = host(a), host(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("centres", ["last", "each"])
def test_value_and_gradient_match_finite_differences(structure, centres):
    net, loss_fn = mlp(), nn.CrossEntropyLoss()
    penalty = LaplacePenalty(structure, strength=0.7, centres=centres)
    penalty.consolidate(net, loss_fn, *task(seed=0)[:1])
    moved(net, seed=1)
    penalty.consolidate(net, loss_fn, task(n=9, seed=2)[0])
    moved(net, seed=3)
    theta = flatten(net).copy()

    def value():
        assign(net, theta)
        return penalty.value(net)

    numeric = numerical_gradient(value, theta)
    assign(net, theta)
    assert penalty.value(net).ndim == 0
    assert relative(penalty.gradient(net), numeric) < 1e-7


def test_full_gradient_is_n_lambda_f_times_the_displacement():
    net, loss_fn = mlp(), nn.CrossEntropyLoss()
    X, _ = task(n=12)
    centre = flatten(net).copy()
    F = fisher(net, loss_fn, X, kind="ggn")
    penalty = LaplacePenalty("full", strength=2.5)
    penalty.consolidate(net, loss_fn, X)
    delta = flatten(moved(net)) - centre
    assert relative(penalty.gradient(net), 12 * 2.5 * F @ delta) < 1e-12
    assert abs(float(penalty.value(net)) - 0.5 * 12 * 2.5 * delta @ F @ delta) < 1e-10 * abs(delta @ F @ delta)


def test_kfac_on_one_example_equals_the_exact_blocks():
    net, loss_fn = mlp(), nn.CrossEntropyLoss()
    X, _ = task(n=1)
    kfac, block = LaplacePenalty("kfac", 3.0), LaplacePenalty("block", 3.0)
    kfac.consolidate(net, loss_fn, X)
    block.consolidate(net, loss_fn, X)
    moved(net)
    assert relative(kfac.gradient(net), block.gradient(net)) < 1e-12


@pytest.mark.parametrize("centres", ["last", "each"])
def test_two_tasks_give_the_sum_of_their_penalties(centres):
    net, loss_fn = mlp(), nn.CrossEntropyLoss()
    both, first, second = (LaplacePenalty("kfac", 1.5, centres) for _ in range(3))
    X1, X2 = task(seed=0)[0], task(n=7, seed=1)[0]
    both.consolidate(net, loss_fn, X1)
    first.consolidate(net, loss_fn, X1)
    moved(net, seed=2)
    both.consolidate(net, loss_fn, X2)
    second.consolidate(net, loss_fn, X2)
    if centres == "last":  # online Laplace: task 1's precision now centred at the latest mode
        first.tasks[0]["centre"] = second.tasks[0]["centre"]
    moved(net, seed=4)
    assert relative(both.gradient(net), first.gradient(net) + second.gradient(net)) < 1e-12
    assert relative(both.value(net), first.value(net) + second.value(net)) < 1e-12


@pytest.mark.parametrize("structure", STRUCTURES)
def test_zero_at_the_consolidated_parameters(structure):
    net, loss_fn = mlp(), nn.CrossEntropyLoss()
    penalty = LaplacePenalty(structure)
    penalty.consolidate(net, loss_fn, task()[0])
    assert float(penalty.value(net)) == 0.0
    assert not np.any(host(penalty.gradient(net)))


def test_add_gradient_only_adds_to_existing_grads():
    net, loss_fn = mlp(), nn.CrossEntropyLoss()
    X, y = task()
    penalty = LaplacePenalty("kfac")
    penalty.consolidate(net, loss_fn, X)
    moved(net)
    loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    before = flatten(net, "grad").copy()
    arrays = [p.grad for p in net.parameters()]
    copies = [g.copy() for g in arrays]
    added = penalty.add_gradient(net, scale=0.25)
    assert relative(flatten(net, "grad"), before + 0.25 * penalty.gradient(net)) < 1e-14
    assert relative(added, 0.25 * penalty.gradient(net)) < 1e-14
    assert all(np.array_equal(a, c) for a, c in zip(arrays, copies)), "the old .grad arrays are not written in place"
    net.zero_grad()  # no .grad at all: the penalty's alone
    for p in net.parameters():
        p.grad = None
    penalty.add_gradient(net)
    assert relative(flatten(net, "grad"), penalty.gradient(net)) < 1e-14


def test_backends_agree_with_numpy(backend_name):
    results = {}
    for name in ("numpy", backend_name):
        mk.nn.init.manual_seed(0)
        net = mlp().to(name)
        penalty = LaplacePenalty("kfac", 2.0, centres="each")
        penalty.consolidate(net, nn.CrossEntropyLoss(), task(backend_name=name)[0])
        moved(net)
        penalty.consolidate(net, nn.CrossEntropyLoss(), task(n=5, seed=1, backend_name=name)[0])
        moved(net, seed=8)
        for p in net.parameters():
            p.grad = None
        penalty.add_gradient(net)
        gradient = penalty.gradient(net)
        assert backend.backend_of(gradient) == name
        results[name] = (penalty.value(net), gradient, flatten(net, "grad"))
    for got, expected in zip(results[backend_name], results["numpy"]):
        assert relative(got, expected) < 1e-12


def test_quadratic_forms_match_dense():
    net, loss_fn = mlp(), nn.CrossEntropyLoss()
    X = task()[0]
    approximations = [mk.curvature.approximate(net, loss_fn, X, s) for s in ("full", "kfac")]
    d = np.random.default_rng(0).standard_normal((approximations[0].size, 3))
    forms = quadratic_forms(approximations, d)
    assert forms.shape == (2, 3)
    for row, approximation in zip(forms, approximations):
        assert relative(row, np.einsum("pm,pq,qm->m", d, approximation.to_dense(), d)) < 1e-12


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="structure must be one of.*'lowrank'"):
        LaplacePenalty("lowrank")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=f"strength must be a finite number > 0, got {bad!r}"):
            LaplacePenalty("kfac", strength=bad)
    with pytest.raises(TypeError, match="strength must be a real number > 0, got str '1'"):
        LaplacePenalty("kfac", strength="1")
    with pytest.raises(ValueError, match="centres must be one of"):
        LaplacePenalty("kfac", centres="first")
    penalty, net = LaplacePenalty("kfac"), mlp()
    with pytest.raises(ValueError, match="no task consolidated yet"):
        penalty.value(net)
    with pytest.raises(ValueError, match="X must be .N, .... inputs with N >= 1, got .0, 3."):
        penalty.consolidate(net, nn.CrossEntropyLoss(), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="num_examples must be an int >= 1, got 0"):
        penalty.consolidate(net, nn.CrossEntropyLoss(), task()[0], num_examples=0)
    penalty.consolidate(net, nn.CrossEntropyLoss(), task()[0])
    other = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3))
    with pytest.raises(ValueError, match=r"net has layers of \[20, 18\] parameters \(P = 38\), expected .*\(P = 31\)"):
        penalty.gradient(other)
    with pytest.raises(ValueError, match="net has layers"):
        penalty.consolidate(other, nn.CrossEntropyLoss(), task()[0])


def test_the_study_at_a_tiny_size():
    tasks = permuted_digits.make_tasks(2, validation=0.5)
    assert len(tasks) == 2 and tasks[0]["X_train"].shape == (719, 64)
    assert np.array_equal(np.sort(tasks[1]["X_train"][0]), np.sort(tasks[0]["X_train"][0]))
    for method in ("none", "kfac"):
        result = permuted_digits.run_sequence(method, tasks, strength=10.0, epochs=2, lr=0.01)
        assert result.accuracy.shape == (2, 2)
        assert np.all(np.diag(result.accuracy) > 0.3), result.accuracy  # chance is 0.1
        assert 0 <= result.average <= 1
        assert "task 2" in permuted_digits.format_table(result)
    with pytest.raises(ValueError, match="method must be one of"):
        permuted_digits.run_sequence("l2", tasks)


def test_the_online_diagonal_differs_from_ewc_only_in_its_centres():
    assert permuted_digits.METHODS["ewc_online"] == ("diag", "last")
    assert permuted_digits.METHODS["ewc"] == ("diag", "each")
    tasks = permuted_digits.make_tasks(2, validation=0.5)
    # with two tasks only task 1 is ever consolidated, and its centre is θ*_1 under both rules
    ewc, online = (permuted_digits.run_sequence(m, tasks, strength=3.0, epochs=1) for m in ("ewc", "ewc_online"))
    assert np.array_equal(ewc.accuracy, online.accuracy)
