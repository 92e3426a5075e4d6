"""Faults: nothing lost and nothing silent when saves collide, files are damaged, paths are wrong,
runs diverge or are interrupted. Every scenario is bounded in time and stays on this machine."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minikfac as mk
from minikfac import checkpoint, cli, models, nn, optim
from minikfac.jobs import train as train_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _net_and_optimizer():
    nn.init.manual_seed(0)
    net = models.mlp(4, 3, hidden=(5,))
    return net, optim.SGD(net.parameters(), lr=0.1)


def _save(path, epoch):
    net, opt = _net_and_optimizer()
    return checkpoint.save(path, net, opt, epoch=epoch, step=epoch, history=[], args={"epoch": epoch})


# --------------------------------------------------------------------------- #
# Checkpoints
# --------------------------------------------------------------------------- #
def _save_many(path, epoch, count):
    for _ in range(count):
        _save(path, epoch)


def test_concurrent_writers_leave_one_whole_checkpoint_and_no_litter(tmp_path):
    path = str(tmp_path / "run.npz")
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_save_many, args=(path, epoch, 25)) for epoch in (1, 2, 3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0  # before: BadZipFile or a missing '.partial' in one of them
    assert checkpoint.load(path)["epoch"] in (1, 2, 3)  # the last complete save wins
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def _die_during_save(path):
    def savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    np.savez = savez
    _save(path, 2)


def test_a_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    path = str(tmp_path / "run.npz")
    _save(path, 1)
    child = multiprocessing.get_context("fork").Process(target=_die_during_save, args=(path,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    assert checkpoint.load(path)["epoch"] == 1


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_litter(tmp_path, monkeypatch):
    path = str(tmp_path / "run.npz")
    _save(path, 1)

    def full_disk(f, **arrays):
        f.write(b"PK")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _save(path, 2)
    assert checkpoint.load(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit flip", "text", "zip of nothing"])
def test_damaged_checkpoints_raise_one_clear_value_error(tmp_path, damage):
    path = str(tmp_path / "run.npz")
    _save(path, 1)
    data = open(path, "rb").read()
    if damage == "empty":
        data = b""
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bit flip":
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
    elif damage == "text":
        data = b"this is not a checkpoint\n"
    else:
        np.savez(path)
        data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(ValueError, match="not a minikfac checkpoint"):
        checkpoint.load(path)


# --------------------------------------------------------------------------- #
# Loading state: all or nothing
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("bad", [np.array([["a"] * 4] * 5), np.ones((5, 4), dtype=complex), np.ones((5, 4), dtype=object)])
def test_module_load_state_dict_is_all_or_nothing(bad):
    net, _ = _net_and_optimizer()
    before = {name: p.data.copy() for name, p in net.named_parameters()}
    state = {name: p.data + 1 for name, p in net.named_parameters()}
    last = list(state)[-1]
    state[last] = bad if bad.shape == state[last].shape else bad.reshape(-1)[: state[last].size].reshape(
        state[last].shape)
    with pytest.raises(ValueError, match=f"{last} has dtype"):
        net.load_state_dict(state)
    assert all(np.array_equal(p.data, before[name]) for name, p in net.named_parameters())


# --------------------------------------------------------------------------- #
# The command line: paths checked before any work, strict JSON, diverged runs, Ctrl-C
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("args, message", [
    (["--json", "{folder}"], "--json: '{folder}' is a folder; expected the path of a file"),
    (["--save", "{folder}"], "--save: '{folder}' is a folder"),
    (["--out", "{file}"], "--out: '{file}' is a file; expected a folder"),
    (["--json", "{file}/report.json"], "is a file, not a folder"),
])
def test_output_paths_are_refused_before_any_work(tmp_path, capsys, monkeypatch, args, message):
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("x")
    monkeypatch.setattr(train_job, "fit", lambda **kwargs: pytest.fail("trained before checking the paths"))
    args = [a.format(folder=folder, file=file) for a in args]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--no-progress"] + args)
    assert exit_.value.code == 2
    assert message.format(folder=folder, file=file) in capsys.readouterr().err


def test_a_diverged_run_exits_1_and_writes_strict_json(tmp_path, capsys):
    report = tmp_path / "report.json"
    status = cli.main(["train", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "1", "--train-examples", "64",
                       "--no-progress", "--json", str(report)])
    assert status == 1
    assert "diverged" in capsys.readouterr().err

    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token}")
    loaded = json.loads(report.read_text(), parse_constant=refuse)
    assert loaded["train_loss"] is None


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(capsys, monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_job, "fit", interrupted)
    assert cli.main(["train", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


@pytest.mark.slow
def test_sigint_during_training_keeps_the_checkpoint_and_exits_130(tmp_path):
    save = tmp_path / "run.npz"
    process = subprocess.Popen([sys.executable, "-m", "minikfac", "train", "--epochs", "200", "--batch-size", "64",
                                "--no-progress", "--save", str(save)], cwd=ROOT, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while not save.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert save.exists(), "no checkpoint within 60 s"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert checkpoint.load(save)["epoch"] >= 1


# --------------------------------------------------------------------------- #
# Dense curvature matrices: a memory guard before anything is allocated
# --------------------------------------------------------------------------- #
def test_dense_curvature_is_refused_above_the_limit_before_allocating(monkeypatch):
    from minikfac import curvature
    from minikfac.curvature import linalg

    nn.init.manual_seed(0)
    net = models.mlp(20, 5, hidden=(30,))  # P = 20·30 + 30 + 30·5 + 5 = 785
    X, y = np.random.default_rng(0).normal(size=(8, 20)), np.arange(8) % 5
    loss_fn = nn.CrossEntropyLoss()
    P = curvature.flatten(net).shape[0]
    monkeypatch.setattr(linalg, "MAX_DENSE_BYTES", 8 * P * P - 1)  # one byte short of F in float64
    for name, call in [("fisher", lambda: curvature.fisher(net, loss_fn, X)),
                       ("fisher", lambda: curvature.fisher(net, loss_fn, X, y=y, kind="empirical")),
                       ("kfac_dense", lambda: curvature.kfac_dense_from_net(net, loss_fn, X)),
                       ("block_diagonal", lambda: curvature.KFACBlockDiagonal.from_net(net, loss_fn, X).to_dense())]:
        with pytest.raises(ValueError, match=rf"{name}: the dense result .* would take .* GiB, above the limit"):
            call()
    monkeypatch.setattr(linalg, "MAX_DENSE_BYTES", 8 * P * P)  # exactly F: allowed
    assert curvature.fisher(net, loss_fn, X).shape == (P, P)
    with pytest.raises(ValueError, match="KroneckerFactors.to_dense"):
        monkeypatch.setattr(linalg, "MAX_DENSE_BYTES", 100)
        curvature.KroneckerFactors(np.eye(4), np.eye(4)).to_dense()


def test_a_huge_net_is_refused_at_once_not_after_asking_for_hundreds_of_gib():
    from minikfac import curvature

    nn.init.manual_seed(0)
    net = models.mlp(784, 10, hidden=(256,))  # P ≈ 200k: F would take ≈ 300 GiB
    X = np.zeros((2, 784))
    with pytest.raises(ValueError, match="would take 3.*GiB"):  # not a MemoryError, nor the machine's memory
        curvature.fisher(net, nn.CrossEntropyLoss(), X)


# --------------------------------------------------------------------------- #
# The grader trusts no student file
# --------------------------------------------------------------------------- #
from minikfac import exercises  # noqa: E402

KRON_SOLUTION = '''
import numpy as np

def vec(X):
    return X.T.reshape(-1)

def unvec(v, m):
    return v.reshape(-1, m).T

def kron_matvec(A, G, X):
    return G @ X @ A.T

def kron_solve(A, G, X):
    return np.linalg.solve(A.T, np.linalg.solve(G, X).T).T
'''


def _grade(tmp_path, text, number=4, time_limit=3.0, name="student.py"):
    path = tmp_path / name
    path.write_text(text)
    return exercises.grade(exercises.find(str(number)), str(path), seed=0, time_limit=time_limit)


def _statuses(report):
    return [(r.part.number, r.status) for r in report.parts]


def test_a_plain_numpy_solution_passes_in_its_own_process(tmp_path):
    report = _grade(tmp_path, KRON_SOLUTION)
    assert report.passed and report.exit_code == 0, report.text()


def test_an_endless_loop_fails_its_part_and_the_next_parts_still_run(tmp_path):
    report = _grade(tmp_path, KRON_SOLUTION + "\ndef kron_matvec(A, G, X):\n    while True:\n        pass\n",
                    time_limit=1.0)
    statuses = dict(_statuses(report))
    assert statuses["4.3"] == "FAILED" and statuses["4.4"] == "passed", report.text()
    assert "did not finish within 1 s" in report.text() and report.exit_code == 1


def test_an_endless_loop_at_import_is_an_import_error(tmp_path):
    report = _grade(tmp_path, "while True:\n    pass\n", time_limit=1.0)
    assert "importing the file did not finish within 1 s" in report.import_error and report.exit_code == 1


@pytest.mark.parametrize("exit_call, reason", [("sys.exit(0)", "called sys.exit(0)"),
                                               ("os._exit(0)", "ended the grading process (exit status 0)")])
def test_exiting_from_a_graded_function_fails_the_part_and_never_passes(tmp_path, exit_call, reason):
    report = _grade(tmp_path, "import os, sys\n" + KRON_SOLUTION + f"\ndef vec(X):\n    {exit_call}\n")
    assert dict(_statuses(report))["4.1"] == "FAILED" and reason in report.text()
    assert dict(_statuses(report))["4.3"] == "passed"  # a fresh process for the next parts
    assert report.exit_code == 1


def test_patching_the_grader_changes_nothing(tmp_path, capsys):
    hostile = ("import minikfac.exercises.grader as g\n"
               "g.grade_part = lambda *a, **k: None\n"
               "g.Report.passed = property(lambda self: True)\n")
    path = tmp_path / "hostile.py"
    path.write_text(hostile)
    for exercise in ("4", "8"):  # one that cannot import the grader's package, one that can
        assert cli.main(["check", exercise, str(path)]) == 1
        assert "(all passed)" not in capsys.readouterr().out


def test_a_forbidden_library_module_is_refused_and_reported(tmp_path):
    cheat = "from minikfac.curvature.kron import kron_matvec, kron_solve, unvec, vec\n"
    report = _grade(tmp_path, cheat)
    assert report.exit_code == 1
    assert "is not allowed in exercise 4" in report.import_error
    lazy = KRON_SOLUTION + "\ndef kron_solve(A, G, X):\n    import minikfac as mk\n" \
                           "    return mk.curvature.kron_solve(A, G, X)\n"
    report = _grade(tmp_path, lazy)
    assert dict(_statuses(report))["4.4"] == "FAILED" and "is not allowed in exercise 4" in report.text()


def test_the_students_folder_is_importable_and_the_work_happens_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_helpers.py").write_text("def matvec(A, G, X):\n    return G @ X @ A.T\n")
    text = ("from my_helpers import matvec\nopen('left_behind.txt', 'w').write('x')\n" + KRON_SOLUTION
            + "\ndef kron_matvec(A, G, X):\n    return matvec(A, G, X)\n")
    report = _grade(tmp_path, text)
    assert report.passed, report.text()
    assert not (tmp_path / "left_behind.txt").exists()  # written in the process's own temporary folder


def test_the_json_report_gives_every_part(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(KRON_SOLUTION + "\ndef vec(X):\n    return X.reshape(-1)\n")
    out = tmp_path / "report.json"
    assert cli.main(["check", "4", str(path), "--seed", "5", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["exercise"] == 4 and report["seed"] == 5 and report["passed"] is False
    assert [p["status"] for p in report["parts"]][:2] == ["FAILED", "passed"]


# --------------------------------------------------------------------------- #
# The curvature at work: a posterior, influences and penalties never take a NaN in,
# never mix a changed net with what they stored, and refuse bad numbers before the long part
# --------------------------------------------------------------------------- #
def _small_classifier(seed=0):
    rng = np.random.default_rng(seed)
    net = mk.nn.Sequential(mk.nn.Linear(4, 5), mk.nn.Tanh(), mk.nn.Linear(5, 3))
    return net, rng.normal(size=(20, 4)), rng.integers(0, 3, size=20)


def test_nan_parameters_or_inputs_are_refused_by_laplace_influence_and_penalties():
    net, X, y = _small_classifier()
    loss = mk.nn.CrossEntropyLoss()
    X_bad = X.copy()
    X_bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="Laplace: X has NaN or Inf"):
        mk.laplace.Laplace(net, loss, X_bad, y)
    penalty = mk.continual.LaplacePenalty("kfac")
    net.layers[0].weight.data[0, 0] = np.inf
    with pytest.raises(ValueError, match="parameter '0.weight' of the net has NaN or Inf"):
        mk.laplace.Laplace(net, loss, X, y)
    with pytest.raises(ValueError, match="LaplacePenalty.consolidate: parameter '0.weight'"):
        penalty.consolidate(net, loss, X, y)
    assert penalty.tasks == []  # nothing stored
    with pytest.raises(ValueError, match="train_self_influences: parameter '0.weight'"):
        mk.influence.train_self_influences(net, loss, X, y, damping=0.1)


def test_a_laplace_refuses_to_predict_once_the_net_has_changed():
    net, X, y = _small_classifier()
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y)
    before = la.predictive(X[:2])
    net.layers[0].bias.data += 0.1
    for method in ("probit", "mc", "map"):
        with pytest.raises(ValueError, match="parameters changed since this Laplace was fitted"):
            la.predictive(X[:2], method)
    net.layers[0].bias.data -= 0.1
    np.testing.assert_allclose(la.predictive(X[:2]), before, atol=1e-12)


def test_bad_damping_and_bounds_are_refused_before_any_curvature_is_computed(monkeypatch):
    net, X, y = _small_classifier()
    loss = mk.nn.CrossEntropyLoss()
    calls = []
    monkeypatch.setattr(mk.influence, "approximate", lambda *a, **k: calls.append(1))
    for bad in (-1.0, np.array(-1.0), np.array(np.nan), True, "heuristc"):
        with pytest.raises((ValueError, TypeError), match="damping"):
            mk.influence.train_test_influences(net, loss, X, y, X[:3], y[:3], damping=bad, structure="kfac")
    with pytest.raises(ValueError, match=r"X_test and y_test .* got X_test \(3, 4\) and y_test \(2,\)"):
        mk.influence.train_test_influences(net, loss, X, y, X[:3], y[:2], damping=0.1)
    assert calls == []
    la = mk.laplace.Laplace(net, loss, X, y)
    for bounds in ((1, 2, 3), 5, (2.0, 1.0)):
        with pytest.raises(ValueError, match="bounds"):
            la.optimize_prior_precision(bounds)
    assert la.prior_precision == 1.0
    with pytest.raises(ValueError, match="LaplacePenalty.add_gradient: scale"):
        mk.continual.LaplacePenalty("diag").add_gradient(net, scale=float("nan"))


def test_the_evidence_has_no_maximiser_at_theta_zero_and_says_so():
    net, X, y = _small_classifier()
    for p in net.parameters():
        p.data[...] = 0
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure="diag")
    with pytest.raises(ValueError, match="no maximiser"):
        la.optimize_prior_precision()
    assert la.prior_precision == 1.0


def test_float32_evidence_stays_finite_for_a_tiny_prior_precision():
    net, X, y = _small_classifier()
    la64 = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y)
    net32 = mk.nn.Sequential(*[layer for layer in net.layers])
    for p in net32.parameters():
        p.data = p.data.astype(np.float32)
    la32 = mk.laplace.Laplace(net32, mk.nn.CrossEntropyLoss(), X.astype(np.float32), y)
    # Far below float32's range δ no longer rounds to 0 inside a log (once +inf); its value there depends on
    # the rounding-level eigenvalues, which float32 and float64 do not share, so only finiteness is compared.
    assert np.isfinite(float(la32.log_marginal_likelihood(1e-300)))
    assert np.isfinite(float(la32.log_marginal_likelihood_derivative(1e-300)))
    for delta in (1.0, 1e30):
        assert float(la32.log_marginal_likelihood(delta)) == pytest.approx(float(la64.log_marginal_likelihood(delta)),
                                                                          rel=1e-4)


@pytest.mark.parametrize("structure", ["kfac", "ekfac", "diag"])
def test_posterior_variance_without_forming_sigma_equals_the_dense_diagonal(structure, monkeypatch):
    net, X, y = _small_classifier()
    la = mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y, structure=structure, prior_precision=0.3)
    dense = np.diagonal(la.posterior_covariance())
    monkeypatch.setattr(type(la), "posterior_covariance", lambda self: pytest.fail("formed Σ"))
    np.testing.assert_allclose(la.posterior_variance(), dense, rtol=1e-10)


def test_a_net_and_data_on_different_backends_get_the_backend_message():
    net, X, y = _small_classifier()
    net.to("fakegpu")
    with pytest.raises(ValueError, match="X is a .*numpy.* but parameters is a .*fakegpu"):
        mk.laplace.Laplace(net, mk.nn.CrossEntropyLoss(), X, y)
