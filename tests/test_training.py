"""The training loop, evaluation, checkpoints, and K-FAC and the autoencoder in training."""

import math

import numpy as np
import pytest

import minikfac as mk
from minikfac import backend, checkpoint, data, models, training
from minikfac.jobs import train as train_job


def _quiet_fit(**kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("log", None)
    return train_job.fit(**kwargs)


def _losses(history):
    return [(r["step"], r["epoch"], r["train_loss"]) for r in history]


def _same_state(a, b):
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- #
# Determinism and exact resumption
# --------------------------------------------------------------------------- #
def test_same_seed_gives_identical_runs_and_another_seed_does_not():
    first = _quiet_fit(epochs=2)
    second = _quiet_fit(epochs=2)
    other = _quiet_fit(epochs=2, seed=1)
    assert _losses(first.report["history"]) == _losses(second.report["history"])
    assert _same_state(first.net.state_dict(), second.net.state_dict())
    assert first.report["test_loss"] == second.report["test_loss"]
    assert _losses(other.report["history"]) != _losses(first.report["history"])


@pytest.mark.parametrize("optimizer, extra", [("adam", {}), ("sgd", {"momentum": 0.9, "weight_decay": 1e-4})])
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, optimizer, extra):
    path = tmp_path / "run.npz"
    straight = _quiet_fit(optimizer=optimizer, epochs=4, dtype="float64", **extra)
    _quiet_fit(optimizer=optimizer, epochs=2, dtype="float64", save=path, **extra)
    saved = checkpoint.load(path)
    assert saved["epoch"] == 2 and saved["step"] == saved["history"][-1]["step"]
    resumed = _quiet_fit(resume=path, epochs=4)  # the rest comes from the checkpoint

    assert resumed.report["optimizer"] == optimizer and resumed.report["dtype"] == "float64"
    assert _losses(resumed.report["history"]) == _losses(straight.report["history"])
    assert _same_state(resumed.net.state_dict(), straight.net.state_dict())
    a, b = resumed.optimizer.state_dict(), straight.optimizer.state_dict()
    assert a["steps"] == b["steps"] == straight.report["steps"]
    for key in b["state"]:
        for name, value in b["state"][key].items():
            assert np.array_equal(a["state"][key][name], value), (key, name)
    assert resumed.report["test_accuracy"] == straight.report["test_accuracy"]
    assert [e["epoch"] for e in resumed.report["evaluations"]] == [1, 2, 3, 4]
    # The training clock continues from the checkpoint's instead of restarting.
    first_resumed_step = resumed.report["history"][saved["step"]]
    assert first_resumed_step["wall_time"] >= saved["history"][-1]["wall_time"]


def test_a_changed_learning_rate_takes_effect_on_resume(tmp_path):
    path = tmp_path / "run.npz"
    _quiet_fit(epochs=1, save=path)
    resumed = _quiet_fit(resume=path, epochs=2, lr=1e-4)
    assert resumed.optimizer.hyper["lr"] == 1e-4 and resumed.report["lr"] == 1e-4


# --------------------------------------------------------------------------- #
# History and evaluation, against independent computations
# --------------------------------------------------------------------------- #
def test_history_records_every_step():
    result = _quiet_fit(epochs=2, batch_size=50)
    history = result.report["history"]
    n_train = len(data.load("digits").y_train)
    per_epoch = math.ceil(n_train / 50)
    assert len(history) == 2 * per_epoch == result.report["steps"]
    assert all(set(r) == {"step", "epoch", "train_loss", "wall_time"} for r in history)
    assert [r["step"] for r in history] == list(range(1, 2 * per_epoch + 1))
    assert [r["epoch"] for r in history] == [0] * per_epoch + [1] * per_epoch
    assert all(isinstance(r["train_loss"], float) and math.isfinite(r["train_loss"]) for r in history)
    times = [r["wall_time"] for r in history]
    assert times == sorted(times) and times[0] >= 0
    assert result.report["train_loss"] == pytest.approx(np.mean([r["train_loss"] for r in history[per_epoch:]]))


def test_first_recorded_loss_is_the_initial_net_on_the_first_shuffled_batch():
    seed, batch = 3, 20
    result = _quiet_fit(epochs=1, batch_size=batch, seed=seed, dtype="float64")
    ds = data.load("digits")
    mk.nn.init.manual_seed(seed)
    net = models.build("mlp", ds)
    # The loader's documented order, re-drawn here; the loss is written out with NumPy.
    rows = np.random.default_rng([seed, 0]).permutation(len(ds.y_train))[:batch]
    logits = net(ds.X_train[rows])
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(batch), ds.y_train[rows]].mean()
    assert result.report["history"][0]["train_loss"] == pytest.approx(expected, rel=1e-12)


def test_evaluate_matches_a_direct_computation_and_leaves_no_caches():
    ds = data.load("digits")
    net = models.mlp(64, 10, hidden=(32,))
    loss_fn = mk.nn.CrossEntropyLoss()
    net(ds.X_train[:10])  # a training-mode forward leaves caches behind
    result = training.evaluate(net, loss_fn, ds.X_test, ds.y_test, batch_size=100)

    assert net.training  # mode restored
    for module in net.modules():
        leftovers = [name for name, value in vars(module).items() if name.startswith("cache_") and value is not None]
        assert not leftovers, (type(module).__name__, leftovers)
    assert all(getattr(loss_fn, name) is None for name in loss_fn.cache_names)

    net.eval()
    logits = net(ds.X_test)
    accuracy = np.mean(logits.argmax(axis=1) == ds.y_test)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(ds.y_test)), ds.y_test].mean()
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-15)
    assert result["loss"] == pytest.approx(loss, rel=1e-12)


def test_default_digits_run_learns():
    report = _quiet_fit(epochs=3, eval_every_epoch=False).report
    assert report["test_accuracy"] > 0.9
    assert report["num_parameters"] == 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


# --------------------------------------------------------------------------- #
# Backends: the whole run on each, identical to NumPy's
# --------------------------------------------------------------------------- #
def _tiny_run(name):
    ds = data.load("digits")
    backend.set_backend(name)
    mk.nn.init.manual_seed(0)
    net = models.mlp(64, 10, hidden=(16,))
    opt = training.make_optimizer("adam", net)
    loader = data.DataLoader(ds.X_train[:200], ds.y_train[:200], 50, seed=0)
    loss_fn = mk.nn.CrossEntropyLoss()
    history = training.train(net, loss_fn, opt, loader, 2, progress=False, log=None)
    return history, training.evaluate(net, loss_fn, ds.X_test, ds.y_test), net


def test_training_runs_on_every_backend(backend_name):
    history, result, net = _tiny_run(backend_name)
    assert backend.backend_of(net.parameters()[0].data) == backend_name
    reference_history, reference, _ = _tiny_run("numpy")
    np.testing.assert_allclose([r["train_loss"] for r in history],
                               [r["train_loss"] for r in reference_history], rtol=1e-10)
    assert result["loss"] == pytest.approx(reference["loss"], rel=1e-10)
    assert result["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-12)


def test_fit_leaves_the_global_backend_and_dtype_as_they_were():
    backend.set_backend("fakegpu")
    result = _quiet_fit(epochs=1, backend="numpy", dtype="float32", eval_every_epoch=False)
    assert backend.get_backend() == "fakegpu" and backend.get_default_dtype() == np.float64
    assert result.net.parameters()[0].data.dtype == np.float32


# --------------------------------------------------------------------------- #
# Checkpoint files
# --------------------------------------------------------------------------- #
def test_checkpoint_round_trip_keeps_types_keys_and_bits(tmp_path):
    net = models.mlp(4, 3, hidden=(5,))
    opt = training.make_optimizer("adam", net)
    history = [{"step": 1, "epoch": 0, "train_loss": 0.1 + 0.2, "wall_time": 1e-300}]
    args = {"dataset": "digits", "model": "mlp", "optimizer": "adam", "lr": 1 / 3}
    state = {"type": "Adam", "hyper": {"betas": (0.9, 0.999)}, "steps": 7,
             "state": {0: {"m": np.arange(6, dtype=np.float32).reshape(2, 3), "count": 2}}}
    opt.state_dict = lambda: state  # an optimizer state with int keys, a tuple and float32
    path = checkpoint.save(tmp_path / "c.npz", net, opt, epoch=3, step=1, history=history, args=args)
    back = checkpoint.load(path)
    assert back["epoch"] == 3 and back["step"] == 1 and back["history"] == history and back["args"] == args
    assert list(back["model"]) == [name for name, _ in net.named_parameters()]
    assert _same_state(back["model"], net.state_dict())
    assert back["optimizer"]["hyper"]["betas"] == (0.9, 0.999)
    saved_m = back["optimizer"]["state"][0]["m"]
    assert saved_m.dtype == np.float32 and np.array_equal(saved_m, state["state"][0]["m"])
    assert back["optimizer"]["state"][0]["count"] == 2
    assert not list(tmp_path.glob("*.partial"))  # no temporary file left behind


def test_loading_bad_checkpoints_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a minikfac checkpoint"):
        checkpoint.load(tmp_path / "other.npz")


def test_resume_refuses_another_model_dataset_or_optimizer(tmp_path):
    path = tmp_path / "run.npz"
    _quiet_fit(epochs=1, save=path, eval_every_epoch=False)
    for key, value in [("model", "cnn"), ("dataset", "mnist16"), ("optimizer", "sgd")]:
        with pytest.raises(ValueError, match=f"{key}='{value}' but the checkpoint has {key}="):
            _quiet_fit(resume=path, epochs=2, **{key: value})


def test_fewer_epochs_than_the_checkpoint_has_is_an_error(tmp_path):
    path = tmp_path / "run.npz"
    _quiet_fit(epochs=2, save=path, eval_every_epoch=False)
    with pytest.raises(ValueError, match="epochs=1 is less than the 2 epochs already finished"):
        _quiet_fit(resume=path, epochs=1)


def test_adam_refuses_momentum():
    with pytest.raises(ValueError, match="momentum"):
        training.make_optimizer("adam", models.mlp(4, 3), momentum=0.9)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        training.make_optimizer("lbfgs", models.mlp(4, 3))


# --------------------------------------------------------------------------- #
# Reconstruction: the autoencoder's loss, targets and metric
# --------------------------------------------------------------------------- #
def test_evaluate_of_an_autoencoder_reports_the_bernoulli_loss_and_the_squared_error():
    X = data.load("digits").X_test[:120]
    net = models.autoencoder(64, widths=(16,), code=4)
    result = training.evaluate(net, mk.nn.BCEWithLogitsLoss(), X, X, batch_size=50)
    net.eval()
    logits = net(X)
    probs = 1 / (1 + np.exp(-logits))
    bce = -(X * np.log(probs) + (1 - X) * np.log1p(-probs)).sum(axis=1).mean()
    assert result["accuracy"] is None
    assert result["loss"] == pytest.approx(bce, rel=1e-10)
    assert result["squared_error"] == pytest.approx(((probs - X) ** 2).sum(axis=1).mean(), rel=1e-10)


def test_a_subset_of_training_examples_is_seeded():
    first = _quiet_fit(model="martens-grosse", train_examples=40, batch_size=16, epochs=1, eval_every_epoch=False)
    again = _quiet_fit(model="martens-grosse", train_examples=40, batch_size=16, epochs=1, eval_every_epoch=False)
    assert first.report["steps"] == 3 and first.report["train_examples"] == 40
    assert _losses(first.report["history"]) == _losses(again.report["history"])
    with pytest.raises(ValueError, match=r"train_examples must be an int in \[1, 1438\]"):
        _quiet_fit(train_examples=5000)


# --------------------------------------------------------------------------- #
# K-FAC in training
# --------------------------------------------------------------------------- #
def test_kfac_run_arguments_take_kfacs_defaults_and_refuse_other_optimizers():
    defaults = train_job.kfac_defaults()
    run = train_job.resolve_args({"optimizer": "kfac", "damping": 0.5})
    assert run["damping"] == 0.5 and run["lr"] is None and run["momentum"] is None
    assert all(run[key] == defaults[key] for key in train_job.KFAC_ARGS if key != "damping")
    assert train_job.resolve_args({"optimizer": "kfac", "kfac_update": "kl_clip", "lr": 0.3})["lr"] == 0.3
    with pytest.raises(ValueError, match="damping=0.5, kfac_kind='true': K-FAC options, for optimizer 'kfac' only"):
        train_job.resolve_args({"optimizer": "adam", "damping": 0.5, "kfac_kind": "true"})
    net = models.mlp(4, 3)
    with pytest.raises(ValueError, match="lr and momentum apply to update='kl_clip' only"):
        training.make_optimizer("kfac", net, lr=0.1, loss_fn=mk.nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="damping: K-FAC options"):
        training.make_optimizer("sgd", net, damping=0.1)
    with pytest.raises(ValueError, match="needs loss_fn"):
        training.make_optimizer("kfac", net)


def test_kfac_trains_the_digits_mlp_and_the_report_records_its_options():
    result = _quiet_fit(optimizer="kfac", train_examples=256, batch_size=64, epochs=1, damping=0.05,
                        inverse_interval=3, eval_every_epoch=False)
    report = result.report
    assert isinstance(result.optimizer, mk.optim.KFAC) and result.optimizer.steps == report["steps"] == 4
    assert result.optimizer.hyper["damping"] == report["damping"] == 0.05
    assert result.optimizer.hyper["inverse_interval"] == report["inverse_interval"] == 3
    defaults = train_job.kfac_defaults()
    assert report["kfac_update"] == defaults["kfac_update"] and report["kfac_kind"] == defaults["kfac_kind"]
    assert report["factored_damping"] is True and report["lr"] is None  # K-FAC's choices, as it used them
    assert report["kfac"] == {"damping": result.optimizer.damping, "refused": 0}
    # Better than the initial network (same seed) on the test split.
    ds = data.load("digits")
    mk.nn.init.manual_seed(0)
    initial = training.evaluate(models.build("mlp", ds), mk.nn.CrossEntropyLoss(), ds.X_test, ds.y_test)
    assert report["test_loss"] < 0.7 * initial["loss"] and report["test_accuracy"] > initial["accuracy"]


# Small batches keep the test fast; exact resumption does not depend on the step being a good one.
@pytest.mark.filterwarnings("ignore:KFAC. the quadratic model sees:RuntimeWarning")
@pytest.mark.parametrize("options", [{}, {"kfac_update": "kl_clip", "preconditioner": "ekfac", "momentum": 0.5}])
def test_kfac_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, options):
    # A tiny net and 96 examples: 6 steps an epoch; eigenbases refreshed every 5 steps and λ adapted
    # every 5 (K-FAC's default), so both cross the checkpoint.
    args = dict(model="martens-grosse", optimizer="kfac", train_examples=96, dtype="float64", inverse_interval=5,
                **options)
    path = tmp_path / "run.npz"
    straight = _quiet_fit(epochs=4, **args)
    _quiet_fit(epochs=2, save=path, **args)
    saved = checkpoint.load(path)
    assert {key: saved["args"][key] for key in args} == args
    resumed = _quiet_fit(resume=path, epochs=4)  # everything else from the checkpoint

    assert _losses(resumed.report["history"]) == _losses(straight.report["history"])
    assert _same_state(resumed.net.state_dict(), straight.net.state_dict())
    a, b = resumed.optimizer.state_dict(), straight.optimizer.state_dict()
    assert a["steps"] == b["steps"] == 24 and a["hyper"] == b["hyper"]
    assert a["state"]["global"] == b["state"]["global"]
    for key in b["state"]:
        for name, value in b["state"][key].items():
            assert np.array_equal(a["state"][key][name], value), (key, name)
    assert resumed.report["test_loss"] == straight.report["test_loss"]
    other = "kfac" if options.get("preconditioner") == "ekfac" else "ekfac"
    with pytest.raises(ValueError, match=f"preconditioner='{other}' but the checkpoint has preconditioner="):
        _quiet_fit(resume=path, epochs=5, preconditioner=other)


def test_run_argument_errors_name_the_arguments_for_any_front_end():
    with pytest.raises(train_job.RunArgumentError) as caught:
        train_job.resolve_args({"optimizer": "kfac", "lr": 0.1})
    err = caught.value
    assert str(err).startswith("lr=0.1 applies to optimizer 'kfac' with kfac_update 'kl_clip' only: ")
    flags = err.describe(lambda key, value: "--" + key.replace("_", "-"),
                         lambda key, value: f"--{key.replace('_', '-')} {value}")
    assert flags.startswith("--lr applies to --optimizer kfac with --kfac-update kl_clip only: ")
    assert train_job.resolve_args({"optimizer": "kfac", "kfac_update": "kl_clip", "momentum": 0.5})["momentum"] == 0.5
    with pytest.raises(train_job.RunArgumentError, match=r"momentum=0.9 applies to optimizer 'sgd' only"):
        train_job.resolve_args({"optimizer": "adam", "momentum": 0.9})


def test_a_run_result_prints_what_it_holds():
    result = _quiet_fit(epochs=1, train_examples=64)
    text = repr(result)
    assert text.startswith("RunResult(digits · mlp · adam: 4 steps, test loss ")
    assert "test accuracy" in text and "object at 0x" not in text
