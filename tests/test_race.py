"""The race (minikfac.jobs.race, ``minikfac bench``): its bookkeeping on exact cases, and tiny runs end to end."""

import json
import math

import numpy as np
import pytest

from minikfac import cli, plot
from minikfac.jobs import race, race_tracks, step_cost

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_SIGNATURE


def _curve(losses, seconds_per_step=0.5, every=10):
    steps = [every * i for i in range(len(losses))]
    return {"step": steps, "seconds": [seconds_per_step * s for s in steps], "train_loss": list(losses)}


def _run(method, lr, steps_to_target, final, steps=100):
    return {"method": method, "lr": lr, "label": f"{method} {lr}", "steps_to_target": steps_to_target,
            "seconds_to_target": None if steps_to_target is None else steps_to_target / 10,
            "final_train_loss": final, "steps": steps, "train_seconds": steps / 10}


# --------------------------------------------------------------------------- #
# Bookkeeping
# --------------------------------------------------------------------------- #
def test_time_to_target_is_the_first_point_at_or_below_the_target():
    curve = _curve([2.0, 1.0, 0.5, 0.7, 0.25, 0.1])
    assert race_tracks.time_to_target(curve, 0.5) == (20, 10.0)  # equal counts as reached
    assert race_tracks.time_to_target(curve, 0.3) == (40, 20.0)  # the later rise does not matter
    assert race_tracks.time_to_target(curve, 3.0) == (0, 0.0)
    assert race_tracks.time_to_target(curve, 0.01) == (None, None)
    assert race_tracks.time_to_target(_curve([1.0, math.nan, math.nan]), 0.5) == (None, None)


def test_evaluation_steps_cover_the_run_and_resolve_its_start():
    steps = race_tracks.evaluation_steps(1000, count=30)
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert {1, 2, 5, 10, 22, 46, 100} <= set(steps)  # 10 log-spaced points: round(10^(k/3))
    assert max(np.diff(steps)) <= 1000 / (30 - 10 - 1) + 1  # evenly spaced later ones
    assert race_tracks.evaluation_steps(3) == [0, 1, 2, 3] and race_tracks.evaluation_steps(0) == [0]


def test_best_of_a_sweep_is_the_fewest_iterations_then_the_lowest_final_loss():
    runs = [_run("sgd", 0.01, None, 0.05), _run("sgd", 0.1, 80, 0.3), _run("sgd", 1.0, 80, 0.2),
            _run("adam", 1e-3, None, 0.4), _run("adam", 1e-2, None, math.nan), _run("adam", 3e-3, None, 0.3)]
    assert race_tracks.best_run(runs, "sgd") == 2  # 80 steps twice: the lower final loss wins
    assert race_tracks.best_run(runs, "adam") == 5  # none reached: lowest final loss, NaN last
    assert race_tracks.best_run(runs, "kfac") is None


def test_kfac_ratios_and_their_bound_when_the_rival_never_arrives():
    kfac = _run("kfac", None, 20, 0.1)
    assert race._versus(kfac, _run("adam", 1e-3, 80, 0.2)) == {"iterations": 0.25, "seconds": 0.25,
                                                              "upper_bound": False}
    bound = race._versus(kfac, _run("adam", 1e-3, None, 0.2, steps=200))
    assert bound == {"iterations": 0.1, "seconds": 0.1, "upper_bound": True}
    assert race._versus(_run("kfac", None, None, 0.3), kfac)["iterations"] is None


def test_suggested_target_is_the_best_first_order_runs_low_point_by_80_percent_rounded_up():
    best = dict(_run("adam", 1e-3, None, 0.01), curve=_curve([1.0, 0.5, 0.1234, 0.2, 0.05, 0.01]))
    worse = dict(_run("sgd", 0.1, None, 0.5), curve=_curve([1.0, 0.5]))
    kfac = dict(_run("kfac", None, None, 0.001), curve=_curve([1.0, 0.001]))
    # Steps 0..50: 80% is step 40, so the low point is 0.05 (step 40), not the final 0.01.
    assert race_tracks.suggest_target([worse, best, kfac]) == pytest.approx(0.05)
    best["curve"]["train_loss"][4] = 0.123456
    assert race_tracks.suggest_target([best]) == pytest.approx(0.124)  # 0.1234 rounded up to three digits
    assert race_tracks.suggest_target([kfac]) is None


def test_goals_judge_accuracy_ratios_bounds_and_step_cost():
    kfac = dict(_run("kfac", None, 20, 0.1), test={"accuracy": 0.975})
    adam = _run("adam", 1e-3, None, 0.2, steps=100)  # never reached: K-FAC's ratio is < 20/100
    result = {"problem": {"goals": {"accuracy": 0.97, "iterations": 1 / 3, "seconds": 0.1}}, "epochs": 10,
              "runs": [adam, kfac], "best": {"adam": 0, "kfac": 1}, "kfac_vs": {"adam": race._versus(kfac, adam)}}
    size, limit = step_cost.STEP_COST_GOAL
    cost = {"batch_sizes": [256, size], "inverse_interval": 20, "ratio_to_sgd": {"kfac": [1.0, limit * 1.2]}}
    goals = race.check_goals({"problems": {"toy": result}, "step_cost": {"toy": cost}})
    assert [(g["value"], g["met"], g["upper_bound"]) for g in goals] == [
        (0.975, True, False), (0.2, True, True), (0.2, None, True), (limit * 1.2, False, False)]  # None: undecided
    cost["ratio_to_sgd"]["kfac"] = [limit * 2, limit * 0.9]  # only the goal's batch size is judged
    assert race.check_goals({"problems": {"toy": result}, "step_cost": {"toy": cost}})[-1]["met"] is True


def test_a_best_at_the_edge_of_its_sweep_is_flagged():
    runs = [_run("sgd", 0.01, None, 0.5), _run("sgd", 0.1, 40, 0.1), _run("sgd", 1.0, 60, 0.2),
            _run("adam", 1e-3, None, 0.4), _run("adam", 3e-3, None, 0.3), _run("adam", 1e-2, 90, 0.2),
            _run("muon", 0.01, 50, 0.1), _run("muon", 0.03, 70, 0.2), _run("muon", 0.1, None, 0.3),
            _run("kfac", None, 20, 0.1), _run("soap", 3e-3, 30, 0.1)]
    edges = {m: race_tracks.sweep_edge(runs, m) for m in ("sgd", "adam", "muon", "kfac", "soap", "shampoo")}
    # Inside; the highest; the lowest; K-FAC and a single run have no sweep; a method that did not run.
    assert edges == {"sgd": None, "adam": "high", "muon": "low", "kfac": None, "soap": None, "shampoo": None}


def test_a_problem_at_another_batch_size_is_the_same_problem_on_another_track():
    problem = race_tracks.PROBLEMS["mnist-cnn"]
    other = problem.at_batch_size(*problem.second_batch)
    assert (other.name, other.batch_size, other.epochs) == ("mnist-cnn-b512", 512, 20)
    assert (other.dataset, other.model, other.target_loss, other.lrs) == (problem.dataset, problem.model,
                                                                          problem.target_loss, problem.lrs)
    assert other.goals == {} and other.second_batch == ()  # the goals were set at the problem's own batch size
    assert problem.at_batch_size(problem.batch_size) is problem
    names = [p.name for p in race_tracks.tracks(["digits-mlp", "mnist-cnn"])]
    assert names == ["digits-mlp", "digits-mlp-b512", "mnist-cnn", "mnist-cnn-b512"]
    assert [p.name for p in race_tracks.tracks(["digits-mlp"], ("second",))] == ["digits-mlp-b512"]
    with pytest.raises(ValueError, match="batches must be some of"):
        race_tracks.tracks(["digits-mlp"], ("large",))
    with pytest.raises(ValueError, match="positive integers"):
        problem.at_batch_size(0)
    # Every method but K-FAC has a sweep of three increasing learning rates on every problem.
    for each in race_tracks.PROBLEMS.values():
        assert set(each.lrs) == set(race_tracks.METHODS) - {"kfac"}
        assert all(len(lrs) == 3 and list(lrs) == sorted(lrs) for lrs in each.lrs.values())


def test_a_batch_larger_than_the_data_is_refused():
    problem = race_tracks.PROBLEMS["digits-mlp"]
    with pytest.raises(ValueError, match="batch_size 128 is larger than the 100 training examples"):
        race.run_one(problem, "sgd", 0.1, race_tracks.prepare(problem, max_train=100))


# --------------------------------------------------------------------------- #
# Tiny races end to end
# --------------------------------------------------------------------------- #
def test_a_tiny_race_of_all_six_methods_through_the_public_function():
    report = race.race(["digits-mlp"], quick=True, progress=False, log=None, step_batch_sizes=(32,),
                       max_train=256, batches=("own",))
    result = report["problems"]["digits-mlp"]
    runs = result["runs"]
    methods = list(race_tracks.METHODS)
    assert methods == ["sgd", "adam", "kfac", "shampoo", "soap", "muon"]
    assert [r["method"] for r in runs] == methods == result["methods"] == report["settings"]["methods"]
    assert result["train_examples"] == 256 and result["epochs"] == 2
    initial = {run["curve"]["train_loss"][0] for run in runs}
    assert len(initial) == 1  # the same initial weights for every method
    for run in runs:
        curve = run["curve"]
        assert run["steps"] == 4 == curve["step"][-1]  # 256 examples, batch 128: two steps an epoch
        assert curve["step"][0] == 0 and curve["seconds"] == sorted(curve["seconds"])
        assert math.isfinite(run["final_train_loss"]) and run["final_train_loss"] == curve["train_loss"][-1]
        assert 0 <= run["test"]["accuracy"] <= 1 and not run["diverged"]
        # quick: each sweep's middle learning rate; K-FAC its defaults
        sweep = race_tracks.PROBLEMS["digits-mlp"].lrs.get(run["method"])
        assert run["lr"] == (None if sweep is None else sweep[1])
    assert runs[2]["damping"] > 0 and runs[2]["refused"] == 0
    assert set(result["kfac_vs"]) == set(methods) - {"kfac"}  # K-FAC against every other method's best
    assert result["best_lr"] == {run["method"]: run["lr"] for run in runs}
    assert all(edge is None for edge in result["sweep_edge"].values())  # one learning rate each: no sweep
    cost = report["step_cost"]["digits-mlp"]
    assert list(cost["seconds"]) == methods and cost["batch_sizes"] == [32] and cost["ratio_to_sgd"]["sgd"] == [1.0]
    assert cost["steps_per_block"] % (2 * cost["inverse_interval"]) == 0  # whole periods of every method
    assert all(s[0] > 0 for s in cost["seconds"].values())
    (goal,) = report["goals"]  # the accuracy goal; no step-cost goal without batch 512
    assert goal["met"] == (goal["value"] >= 0.97) and goal["value"] == runs[2]["test"]["accuracy"]
    text = race.table(report)
    assert "kfac (defaults)" in text and "Step cost" in text and "Goals (quick run" in text
    for method in methods:
        assert f"\n  {method} " in text  # its line among each method's best, and a step-cost column
    assert text.count("K-FAC ÷ it") == 1 and "EDGE" not in text
    json.dumps(report)  # JSON-ready


def test_a_race_at_two_batch_sizes_flags_a_sweep_whose_best_is_at_its_edge():
    """Both tracks of a problem: same initial weights, the second at its own batch and budget; a sweep
    whose largest rate is far the best is flagged in the result, the table and the figure's legend."""
    tiny = race_tracks.Problem("tiny", "digits", "mlp", 64, 1, target_loss=1.0,
                               lrs={"sgd": (1e-4, 1e-3, 0.3), "adam": (1e-3,)}, second_batch=(128, 2))
    report = race.race([tiny], progress=False, log=None, step_batch_sizes=(), max_train=256,
                       methods=("sgd", "adam", "kfac"))
    assert list(report["problems"]) == ["tiny", "tiny-b128"] and report["step_cost"] == {}
    own, second = report["problems"]["tiny"], report["problems"]["tiny-b128"]
    assert own["problem"]["batch_size"] == 64 and second["problem"]["batch_size"] == 128
    assert [r["steps"] for r in own["runs"]] == [4] * 5 and [r["steps"] for r in second["runs"]] == [4] * 5
    assert {r["curve"]["train_loss"][0] for r in own["runs"] + second["runs"]} == {own["runs"][0]["curve"]["train_loss"][0]}
    for result in (own, second):
        assert result["best_lr"]["sgd"] == 0.3 and result["sweep_edge"] == {"sgd": "high", "adam": None, "kfac": None}
    text = race.table(report)
    assert text.count("EDGE high") == 2 and "EDGE: the best run of sgd is at the edge of its sweep" in text
    # Run apart and merged, the same race: the same runs, verdicts and ratios.
    part = race.race([tiny], progress=False, log=None, step_batch_sizes=(), max_train=256, methods=("kfac",))
    rest = race.race([tiny], progress=False, log=None, step_batch_sizes=(), max_train=256, methods=("sgd", "adam"))
    merged = race.merge([part, rest])
    for name, result in report["problems"].items():
        together = merged["problems"][name]
        assert [r["label"] for r in together["runs"]] == [r["label"] for r in result["runs"]]
        assert [r["curve"]["train_loss"] for r in together["runs"]] == [r["curve"]["train_loss"] for r in result["runs"]]
        assert together["best_lr"] == result["best_lr"] and together["sweep_edge"] == result["sweep_edge"]
        assert set(together["kfac_vs"]) == {"sgd", "adam"}
    with pytest.raises(ValueError, match="in two reports"):
        race.merge([part, part])


def test_a_run_can_stop_at_the_target():
    """stop_at_target: the run ends at the first measured point at or below the target, and says so;
    without the flag the same run goes on to the end of its budget."""
    problem = race_tracks.Problem("easy", "digits", "mlp", 32, 3, target_loss=1.5, lrs={"adam": (1e-2,)})
    setup = race_tracks.prepare(problem, max_train=256)
    stopped = race.run_one(problem, "adam", 1e-2, setup, stop_at_target=True)
    full = race.run_one(problem, "adam", 1e-2, setup)
    assert stopped["stopped_at_target"] and not full["stopped_at_target"]
    assert stopped["steps"] == stopped["steps_to_target"] == full["steps_to_target"] < full["steps"] == 24
    assert stopped["final_train_loss"] <= 1.5 < stopped["curve"]["train_loss"][-2]
    result = race.race_problem(problem, progress=False, log=None, max_train=256, methods=("adam",),
                               stop_at_target=True)
    assert result["stopped_at_target"] and result["suggested_target"] is None


def test_an_autoencoder_run_reports_its_reconstruction_error():
    problem = race_tracks.PROBLEMS["mnist-autoencoder"]
    setup = race_tracks.prepare(problem, max_train=300)
    run = race.run_one(problem, "adam", 1e-3, setup, epochs=1)
    test = run["test"]
    assert set(test) == {"loss", "squared_error"} and run["steps"] == 1  # 300 examples: one full batch of 256
    # Bernoulli NLL per image ≥ the squared error's bound: both positive and finite here.
    assert 0 < test["squared_error"] < 784 and test["loss"] > 0


def test_bench_writes_json_and_figures(tmp_path, capsys):
    out, path = tmp_path / "figures", tmp_path / "bench.json"
    status = cli.main(["bench", "--quick", "--problems", "digits-mlp", "--max-train", "600", "--no-progress",
                       "--methods", "adam,kfac", "--step-batch-sizes", "32", "--json", str(path), "--out", str(out)])
    assert status == 0
    report = json.loads(path.read_text())
    assert report["settings"]["quick"] and list(report["problems"]) == ["digits-mlp", "digits-mlp-b512"]
    assert [r["method"] for r in report["problems"]["digits-mlp-b512"]["runs"]] == ["adam", "kfac"]
    assert _is_png(out / "race_digits-mlp.png") and _is_png(out / "race_digits-mlp-b512.png")
    assert _is_png(out / "step_cost.png")
    printed = capsys.readouterr().out
    assert "digits-mlp: mlp on digits" in printed and "Wrote" in printed


@pytest.mark.parametrize("flags, named", [(["--problems", "digits-mlp,imagenet"], "imagenet"),
                                          (["--methods", "kfac,lbfgs"], "lbfgs"),
                                          (["--batches", "huge"], "huge")])
def test_bench_refuses_an_unknown_problem_method_or_batch(capsys, flags, named):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", *flags])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_plot_functions_write_pngs(tmp_path):
    runs = [dict(_run("sgd", 0.1, 20, 0.2), curve=_curve([1.0, 0.4, 0.2])),
            dict(_run("sgd", 0.3, None, 0.5), curve=_curve([1.0, 0.7, math.nan])),
            dict(_run("kfac", None, 10, 0.1), curve=_curve([1.0, 0.2, 0.1]))]
    runs += [dict(_run(m, 0.01, 10 * k, 0.1), curve=_curve([1.0, 0.3 / k, 0.1 / k]))
             for k, m in enumerate(("adam", "shampoo", "soap", "muon"), start=1)]
    best = {r["method"]: i for i, r in enumerate(runs) if r["lr"] != 0.3}
    result = {"problem": {"name": "toy", "target_loss": 0.3, "batch_size": 64}, "runs": runs, "best": best,
              "sweep_edge": {"sgd": "low"}}
    assert set(plot.METHOD_COLORS) == set(race_tracks.METHODS) and len(set(plot.METHOD_COLORS.values())) == 6
    assert _is_png(plot.race_curves(result, tmp_path / "race.png"))
    cost = {"problem": "toy", "batch_sizes": [64, 128], "inverse_interval": 20,
            "seconds": {"sgd": [1e-3, 2e-3], "kfac": [2e-3, None], "muon": [1.5e-3, 3e-3]},
            "ratio_to_sgd": {"sgd": [1, 1], "kfac": [2, None], "muon": [1.5, 1.5]}}
    assert _is_png(plot.step_cost([cost, cost], tmp_path / "cost.png", goal=(512, 1.5)))
    with pytest.raises(ValueError, match="race_problem"):
        plot.race_curves({"runs": []}, tmp_path / "bad.png")
