"""Bad inputs to the public API: each one is refused at once with an error that names the argument,
what it got and what it expected (never a ZeroDivisionError, an AttributeError deep inside, or a
silent wrong answer)."""

import numpy as np
import pytest

import minikfac as mk
from minikfac import checkpoint, curvature, data, models, nn, training
from minikfac.jobs import train as train_job


def _net():
    nn.init.manual_seed(0)
    return models.mlp(4, 3, hidden=(5,))


X = np.random.default_rng(0).normal(size=(8, 4))
Y = np.arange(8) % 3


def _kfac_step(X_step, y_step):
    net, loss_fn = _net(), nn.CrossEntropyLoss()
    opt = mk.optim.KFAC(net, loss_fn)
    loss_fn(net(X), Y)
    net.backward(loss_fn.backward())
    return opt.step(X_step, y_step)


CASES = {
    "MC Fisher with no samples": (lambda: curvature.fisher(_net(), nn.CrossEntropyLoss(), X, kind="mc", samples=0),
                                  ValueError, "samples must be a positive int for kind='mc', got 0"),
    "a Python list into a net": (lambda: _net()([[1.0, 2.0, 3.0, 4.0]]),
                                 TypeError, "the input must be an array (N, ...), got list"),
    "no examples into a conv net": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())(np.zeros((0, 1, 6, 6))),
                                    ValueError, "expected (N, ...) with N >= 1 examples"),
    "complex inputs": (lambda: _net()(X.astype(complex)), TypeError, "dtype complex128; expected real numbers"),
    "a bool for a layer size": (lambda: nn.Linear(True, 3), ValueError, "in_features must be a positive int, got True"),
    "a float kernel size": (lambda: nn.Conv2d(1, 2, 3.0), ValueError,
                            "kernel_size must be an int or a pair of them (rows, cols), got 3.0"),
    "evaluating no examples": (lambda: training.evaluate(_net(), nn.CrossEntropyLoss(), np.zeros((0, 4)),
                                                         np.zeros(0, dtype=int)),
                               ValueError, "evaluate: X has no examples"),
    "a loader with no batch": (lambda: training.train(_net(), nn.CrossEntropyLoss(), mk.optim.SGD(_net().parameters(),
                                                                                                   lr=0.1),
                                                      data.DataLoader(X, Y, 16, drop_last=True), 1, progress=False,
                                                      log=None),
                               ValueError, "the loader gives no batch (8 examples, batch_size=16, drop_last=True)"),
    "labels of None": (lambda: data.DataLoader(X, np.array([None] * 8, dtype=object), 4), TypeError,
                       "y has dtype object; expected real numbers"),
    "labels of mixed objects": (lambda: data.DataLoader(X, np.array([2.5, 1] * 4, dtype=object), 4), TypeError,
                                "y has dtype object"),
    "a non-symmetric factor": (lambda: curvature.kron_solve(np.triu(np.ones((3, 3))), np.eye(2), np.ones((2, 3)), 0.1),
                               ValueError, "A is not symmetric"),
    "K-FAC without a loss": (lambda: mk.optim.KFAC(_net(), None), TypeError,
                             "loss_fn must be the net's loss (a minikfac.nn.Loss"),
    "K-FAC's step without targets": (lambda: _kfac_step(X, None), TypeError, "KFAC.step: y must be the batch's targets"),
    "K-FAC's step with rows that disagree": (lambda: _kfac_step(X, Y[:4]), ValueError, "X has 8 rows but y has 4"),
    "K-FAC's λ set to zero": (lambda: setattr(mk.optim.KFAC(_net(), nn.CrossEntropyLoss()), "damping", 0.0),
                              ValueError, "damping must be > 0"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_clearly(name):
    call, error, message = CASES[name]
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value)


def test_numpy_integers_as_run_arguments_give_json_reports_and_checkpoints(tmp_path):
    save = tmp_path / "run.npz"
    result = train_job.fit(seed=np.int64(3), epochs=np.int64(1), train_examples=32, save=str(save), progress=False,
                           log=None)
    assert result.report["seed"] == 3 and type(result.report["seed"]) is int
    assert checkpoint.load(save)["args"]["seed"] == 3


def test_a_damping_given_on_resuming_is_the_one_used_and_recorded(tmp_path):
    save = tmp_path / "run.npz"
    options = dict(optimizer="kfac", epochs=1, train_examples=64, batch_size=32, progress=False, log=None)
    train_job.fit(save=str(save), **options)
    adapted = checkpoint.load(save)["optimizer"]["state"]["global"]["damping"]
    resumed = train_job.fit(resume=str(save), damping=0.5, **dict(options, epochs=2))
    assert resumed.report["damping"] == 0.5
    assert adapted != 0.5 and resumed.optimizer.steps == 4
    # Two steps after the resume, λ started at 0.5: the LM rule moves it by (19/20)^5 at most once.
    assert 0.5 * 0.95 ** 5 <= resumed.report["kfac"]["damping"] <= 0.5 / 0.95 ** 5


def test_hyper_parameter_assignments_are_checked_and_take_effect():
    net = _net()
    sgd = mk.optim.SGD(net.parameters(), lr=0.1)
    sgd.hyper["lr"] = 0.05  # a schedule: checked, and used by the next step
    assert sgd.hyper["lr"] == 0.05
    with pytest.raises(ValueError, match="lr must be > 0"):
        sgd.hyper["lr"] = -1.0
    assert sgd.hyper["lr"] == 0.05
    with pytest.raises(KeyError, match="has no 'learning_rate'"):
        sgd.hyper["learning_rate"] = 0.1
    with pytest.raises(TypeError, match="names cannot be removed"):
        del sgd.hyper["lr"]
    kfac = mk.optim.KFAC(net, nn.CrossEntropyLoss())
    kfac.hyper["damping"] = 0.5  # before: only the recorded starting value changed, silently
    assert kfac.damping == 0.5
    with pytest.raises(ValueError, match="min_damping=0.001 is above damping=0.0001"):
        kfac.hyper["damping"] = 1e-4
    assert kfac.damping == 0.5 and kfac.hyper["damping"] == 0.5


@pytest.mark.parametrize("kind", ["sgd", "adam", "kfac"])
def test_an_optimizer_made_before_the_net_moved_says_so_and_how_to_mend_it(kind):
    net, loss_fn = _net(), nn.CrossEntropyLoss()
    opt = {"sgd": lambda: mk.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
           "adam": lambda: mk.optim.Adam(net.parameters()), "kfac": lambda: mk.optim.KFAC(net, loss_fn)}[kind]()

    def step(X_step, y_step):
        opt.zero_grad()
        loss_fn(net(X_step), y_step)
        net.backward(loss_fn.backward())
        opt.step(X_step, y_step) if opt.needs_batch else opt.step()
    step(X, Y)  # state made on NumPy
    net.to("fakegpu")
    X_device, Y_device = mk.asarray(X, backend="fakegpu"), mk.asarray(Y, backend="fakegpu")
    with pytest.raises(ValueError, match="is on numpy but the parameters are on fakegpu: the net was moved"):
        step(X_device, Y_device)
    opt.load_state_dict(opt.state_dict())  # the mend the message gives
    step(X_device, Y_device)
    assert opt.steps == 2


def test_an_input_changed_in_place_between_forward_and_backward_is_refused():
    net, loss_fn = _net(), nn.CrossEntropyLoss()
    X_mine = X.copy()
    loss_fn(net(X_mine), Y)
    X_mine[0, 0] += 1.0  # the first layer kept X_mine itself, not a copy
    with pytest.raises(ValueError, match=r"Linear\(4, 5.*its input was changed in place after the forward"):
        net.backward(loss_fn.backward())
    loss_fn(net(X_mine), Y)  # the forward again: fine
    net.backward(loss_fn.backward())
