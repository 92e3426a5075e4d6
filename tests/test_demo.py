"""The main job, ``minikfac demo``: its report and its summary, on the quick sizes.

The full demo (about two minutes) is what ``make demo`` runs; here ``--quick``
runs every part at toy sizes, and the checks are about what the report
contains and whether it agrees with itself, not about K-FAC's numbers.
"""

import json
import re

import pytest

from minikfac import cli
from minikfac.jobs import compare, demo, demo_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    report = demo.run(str(out), quick=True, progress=False, log=None)
    return out, report


def test_demo_writes_the_summary_the_json_and_every_figure(quick_report):
    out, report = quick_report
    assert set(report) >= {"settings", "comparison", "race", "figures", "seconds", "summary"}
    for name in ("fisher_vs_kfac.png", "inverse_structure.png", "spectra.png", "monte_carlo.png",
                 "race_digits-mlp.png"):
        assert name in report["figures"], name
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, name
    saved = json.loads((out / "summary.json").read_text())
    assert saved["comparison"]["errors"] == report["comparison"]["errors"]
    assert saved["race"]["problems"].keys() == {"digits-mlp"}


def test_summary_md_has_the_error_table_and_the_race_with_the_report_numbers(quick_report):
    out, report = quick_report
    text = (out / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("# minikfac demo (quick")
    errors = report["comparison"]["errors"]
    for name, error in errors.items():  # every approximation's row, with its own numbers
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert f"{error['total']:.3f}" in row and row.count("|") == len(error["layers"]) + 3, row
    for name in report["comparison"]["cosines"]:
        assert re.search(rf"^\| {re.escape(name)} \| -?\d\.\d{{3}} \|$", text, re.MULTILINE), name
    runs = report["race"]["problems"]["digits-mlp"]["runs"]
    assert [run["method"] for run in runs] == ["adam", "kfac"]
    for run in runs:
        assert f"{run['final_train_loss']:.4g}" in text
    # every image the summary links exists beside it
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (out / link).is_file(), link


def test_markdown_states_an_upper_bound_and_a_missed_target():
    race_result = {"problem": {"model": "mlp", "dataset": "digits", "batch_size": 8, "target_loss": 0.1,
                               "task": "classification"},
                   "train_examples": 10, "epochs": 1, "runs": [], "best": {}}
    bound = dict(race_result, kfac_vs={"adam": {"iterations": 0.5, "seconds": 2.0, "upper_bound": True}})
    missed = dict(race_result, kfac_vs={"adam": {"iterations": None, "seconds": None, "upper_bound": False}})
    assert "**< 0.50× the iterations**" in "\n".join(demo_summary.race_section({"problems": {"p": bound}}))
    assert "did not reach the target" in "\n".join(demo_summary.race_section({"problems": {"p": missed}}))


def test_the_command_prints_progress_and_a_summary(tmp_path, capsys):
    json_path = tmp_path / "demo.json"
    assert cli.main(["demo", "--quick", "--no-progress", "--out", str(tmp_path / "r"), "--json", str(json_path)]) == 0
    printed = capsys.readouterr().out
    assert "minikfac demo" in printed and "Exact Fisher vs K-FAC (mlp, P = 1,482" in printed
    assert "[1/3]" not in printed  # --no-progress: only the final summary
    assert json.loads(json_path.read_text())["settings"]["quick"] is True
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "r2")]) == 0
    printed = capsys.readouterr().out
    assert "[1/3] Exact Fisher vs K-FAC" in printed and "[2/3] The race" in printed and "Wrote " in printed


def test_comparison_settings_refuse_unknown_names_and_check_the_network():
    with pytest.raises(TypeError, match=r"unknown settings \['exampels'\]"):
        compare.settings(exampels=3)
    with pytest.raises(ValueError, match="compare needs P <= 12,000"):
        compare.setup(compare.settings(dataset="mnist16", model="mlp", hidden=[64, 64]))
    with pytest.raises(ValueError, match="--examples: digits has 1,438 training examples, got 5,000"):
        compare.setup(compare.settings(dataset="digits", model="mlp", examples=5000))
