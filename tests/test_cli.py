"""The command line, run in-process through ``minikfac.cli.main``."""

import json
import math
import os
import subprocess
import sys

import pytest

from minikfac import cli, data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_SIGNATURE


def _train(*extra):
    return cli.main(["train", "--dataset", "digits", "--no-progress", *extra])


def test_train_writes_a_json_report_and_a_loss_curve(tmp_path, capsys):
    report_path, out = tmp_path / "deep" / "report.json", tmp_path / "figures"
    status = _train("--epochs", "1", "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.05",
                    "--momentum", "0.9", "--json", str(report_path), "--out", str(out))
    assert status == 0
    with open(report_path) as f:
        report = json.load(f)
    expected = dict(dataset="digits", model="mlp", optimizer="sgd", epochs=1, batch_size=32, lr=0.05,
                    momentum=0.9, weight_decay=0.0, seed=0, backend="numpy", dtype="float32")
    assert {k: report[k] for k in expected} == expected
    steps = math.ceil(len(data.load("digits").y_train) / 32)
    assert report["steps"] == len(report["history"]) == steps
    assert set(report["history"][0]) == {"step", "epoch", "train_loss", "wall_time"}
    assert 0.5 < report["test_accuracy"] <= 1 and report["test_loss"] > 0
    assert report["wall_time"] > 0 and report["num_parameters"] > 0
    assert _is_png(out / "loss_curve.png")
    printed = capsys.readouterr().out
    assert f"test accuracy {100 * report['test_accuracy']:.2f}%" in printed


def test_resume_through_the_command_line(tmp_path, capsys):
    checkpoint, first, second = tmp_path / "ck.npz", tmp_path / "a.json", tmp_path / "b.json"
    assert _train("--epochs", "1", "--save", str(checkpoint), "--json", str(first)) == 0
    assert _train("--resume", str(checkpoint), "--epochs", "2", "--json", str(second)) == 0
    a, b = (json.loads(p.read_text()) for p in (first, second))
    assert b["epochs"] == 2 and b["steps"] == 2 * a["steps"] and b["resumed_from"] == str(checkpoint)
    strip = [{k: r[k] for k in ("step", "epoch", "train_loss")} for r in a["history"]]
    assert [{k: r[k] for k in ("step", "epoch", "train_loss")} for r in b["history"][: a["steps"]]] == strip


def test_resume_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nothing.npz"
    with pytest.raises(SystemExit) as exit_info:
        _train("--resume", str(missing))
    assert exit_info.value.code == 2
    assert f"--resume: checkpoint '{missing}' does not exist" in capsys.readouterr().err


def test_resume_of_another_model_is_refused(tmp_path, capsys):
    checkpoint = tmp_path / "ck.npz"
    _train("--epochs", "1", "--save", str(checkpoint))
    with pytest.raises(SystemExit) as exit_info:
        _train("--resume", str(checkpoint), "--model", "cnn", "--epochs", "2")
    assert exit_info.value.code == 2
    assert "model='cnn' but the checkpoint has model='mlp'" in capsys.readouterr().err


@pytest.mark.parametrize("bad, message", [
    (["--epochs", "0"], "--epochs: expected an integer >= 1"),
    (["--lr", "-1"], "--lr: expected a number > 0"),
    (["--momentum", "1.5"], "--momentum: expected a number in [0, 1)"),
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
    (["--optimizer", "adam", "--damping", "0.1"], "--damping: K-FAC options, for --optimizer kfac only"),
    (["--optimizer", "sgd", "--no-adapt-damping", "--exact-damping"],
     "--no-adapt-damping, --exact-damping: K-FAC options, for --optimizer kfac only"),
    (["--optimizer", "kfac", "--lr", "0.1"], "--lr applies to --optimizer kfac with --kfac-update kl_clip only: "
                                             "the quadratic update chooses its step size"),
    (["--optimizer", "kfac", "--kfac-update", "quadratic", "--momentum", "0.5"], "--momentum applies to"),
    (["--stats-fraction", "0"], "--stats-fraction: expected a number in (0, 1]"),
    (["--max-momentum", "1"], "--max-momentum: expected a number in [0, 1)"),
    (["--kl-per-example", "0"], "--kl-per-example: expected a number > 0"),
    (["--min-stats-examples", "0"], "--min-stats-examples: expected an integer >= 1"),
    (["--optimizer", "adam", "--kl-per-example", "0.1"], "--kl-per-example: K-FAC options, for --optimizer kfac only"),
    (["--kfac-kind", "fisher"], "invalid choice: 'fisher'"),
    (["--exact-damping", "--factored-damping"], "not allowed with argument --exact-damping"),
])
def test_bad_arguments_are_argparse_errors(bad, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *bad])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_kfac_trains_an_autoencoder_end_to_end(tmp_path, capsys):
    report_path, out = tmp_path / "ae.json", tmp_path / "figures"
    assert _train("--model", "autoencoder", "--optimizer", "kfac", "--train-examples", "96", "--batch-size", "32",
                  "--epochs", "2", "--damping", "0.05", "--no-adapt-damping", "--kfac-kind", "empirical",
                  "--json", str(report_path), "--out", str(out)) == 0
    report = json.loads(report_path.read_text())
    widths = [64, 200, 100, 30, 100, 200, 64]  # the default autoencoder on the 8x8 digits
    assert report["num_parameters"] == sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    assert report["damping"] == 0.05 and report["adapt_damping"] is False and report["kfac_kind"] == "empirical"
    assert report["steps"] == 6 and report["kfac"]["damping"] == 0.05  # a fixed λ stays as it was
    assert report["test_accuracy"] is None and report["test_squared_error"] > 0
    first, last = report["evaluations"]
    assert last["test_loss"] < first["test_loss"] and set(first) >= {"test_loss", "test_squared_error"}
    assert _is_png(out / "loss_curve.png")
    printed = capsys.readouterr().out
    assert "kfac (quadratic, λ 0.05 fixed, factored, empirical on 12.5% (≥ 128 examples), T 20)" in printed
    assert f"test squared error {report['test_squared_error']:.2f} per image" in printed
    assert "K-FAC: final λ 0.05, 0 refused steps" in printed


def test_train_help_lists_the_kfac_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "K-FAC options" in text and "Martens & Grosse 2015" in text
    for flag in ("--damping", "--kfac-update", "--kl-clip", "--max-momentum", "--kl-per-example", "--stats-fraction",
                 "--min-stats-examples", "--inverse-interval",
                 "--factor-decay", "--kfac-kind", "--no-adapt-damping", "--exact-damping", "--preconditioner"):
        assert flag in text, flag


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "minikfac", "train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--resume PATH" in done.stdout and "--backend" in done.stdout


def test_no_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


def test_the_library_does_not_import_matplotlib():
    code = ("import sys, minikfac, minikfac.cli, minikfac.training, minikfac.models; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


def test_loss_curve_refuses_an_empty_history(tmp_path):
    from minikfac import plot

    with pytest.raises(ValueError, match="history is empty"):
        plot.loss_curve([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="'step', 'epoch' and 'train_loss'"):
        plot.loss_curve([{"loss": 1.0}], tmp_path / "x.png")


# --------------------------------------------------------------------------- #
# compare
# --------------------------------------------------------------------------- #
def _compare(*extra):
    # A tiny setting: a 460-parameter MLP on the digits, 40 examples, one epoch of training.
    return cli.main(["compare", "--dataset", "digits", "--model", "mlp", "--hidden", "6", "--examples", "40",
                     "--train-epochs", "1", "--mc-samples", "1,4", "--mc-seeds", "1", *extra])


def test_compare_writes_the_table_the_json_and_the_figures(tmp_path, capsys):
    report_path, out = tmp_path / "compare.json", tmp_path / "figures"
    assert _compare("--json", str(report_path), "--out", str(out)) == 0
    report = json.loads(report_path.read_text())
    assert {"arguments", "parameters", "training", "figure_layers", "figures", "setup", "errors", "sources",
            "monte_carlo", "cosines", "spectra", "notes", "timings"} <= set(report)
    assert report["parameters"] == 65 * 6 + 7 * 10 and report["setup"]["examples"] == 40
    assert set(report["errors"]) == {"K-FAC", "K-FAC tridiagonal", "EKFAC", "diagonal", "block-diagonal",
                                     "Shampoo²", "Shampoo", "SOAP", "nearest Kronecker"}
    assert set(report["kronecker"]["to_nearest"]) >= {"K-FAC", "Shampoo²"}
    assert report["figure_layers"] == [1, 2] and report["monte_carlo"]["samples"] == [1, 4]
    assert {"training", "exact Fisher", "spectra", "figures", "total"} <= set(report["timings"])
    for name in ("fisher_vs_kfac", "inverse_structure", "spectra", "monte_carlo"):
        assert _is_png(out / f"{name}.png")
    printed = capsys.readouterr().out
    assert "Relative Frobenius error" in printed and "Cosine with the exact step" in printed
    assert "Time: training" in printed


def test_compare_of_an_empirical_fisher_on_a_conv_net(tmp_path, capsys):
    out = tmp_path / "cnn"
    assert cli.main(["compare", "--dataset", "digits", "--model", "cnn", "--channels", "2", "--examples", "20",
                     "--train-epochs", "0", "--kind", "empirical", "--no-spectra", "--out", str(out)]) == 0
    assert _is_png(out / "fisher_vs_kfac.png") and _is_png(out / "inverse_structure.png")
    assert not (out / "spectra.png").exists()
    printed = capsys.readouterr().out
    assert "K-FAC tridiagonal skipped" in printed and "Exact Fisher (empirical)" in printed
    assert "Monte-Carlo noise: measured for kind='true'" in printed


@pytest.mark.parametrize("bad, message", [
    (["--dataset", "mnist16", "--model", "mlp", "--hidden", "64,64"], "compare needs P <= 12,000"),
    (["--examples", "100000"], "--examples: digits has 1,438 training examples"),
    (["--layers", "3"], "--layers: expected increasing layer numbers from 1 to 2, got 3"),
    (["--mc-samples", "0,4"], "--mc-samples: expected comma-separated integers >= 1"),
    (["--hidden", "six"], "--hidden: expected comma-separated integers >= 1"),
    (["--kind", "mc"], "invalid choice: 'mc'"),
])
def test_compare_bad_options_are_argparse_errors(bad, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _compare("--out", str(tmp_path), *bad)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
