"""The classroom exercises and their grader (``minikfac check``).

For every exercise: the untouched student file fails every part with "not
implemented"; a correct solution, written here from the library's own functions
(into tmp_path, never next to the student files), passes every part for several
seeds; and plausible wrong solutions — a transposed result, a missing 1/N, the
wrong vec order, a forgotten bias column, ... — fail exactly the part they get
wrong, with a message that names the mistake. Then the command line: exit codes
0/1/2, --list, --seed, unknown names, missing files, files that do not import.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minikfac import cli, exercises
from minikfac.exercises import registry

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXERCISE_DIR = ROOT / "tutorials" / "exercises"

# --------------------------------------------------------------------------- #
# Correct solutions, built from the library
# --------------------------------------------------------------------------- #
HEADER = """
import numpy as np
import minikfac as mk
from minikfac import curvature, nn
from minikfac.curvature import kron, statistics
from minikfac.curvature.damping import factored_pi
from minikfac.nn import conv
"""

SOLUTIONS = {
    1: """
def _layer(W, b):
    layer = nn.Linear(W.shape[1], W.shape[0], bias=b is not None)
    layer.weight.data = W
    if b is not None:
        layer.bias.data = b
    return layer

def linear_forward(x, W, b):
    return _layer(W, b)(x)

def linear_backward(dout, x, W, b):
    layer = _layer(W, b)
    layer(x)
    dx = layer.backward(dout)
    return dx, layer.weight.grad, None if b is None else layer.bias.grad
""",
    2: """
def output_size(size, kernel, stride, padding):
    return conv.output_size(size, kernel, stride, padding)

def im2col(x, kernel, stride, padding):
    return conv.im2col(x, kernel, stride, padding)

def conv2d_forward(x, weight, bias, stride, padding):
    c_out, c_in, kh, kw = weight.shape
    layer = nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding, bias=bias is not None)
    layer.weight.data = weight
    if bias is not None:
        layer.bias.data = bias
    return layer(x)
""",
    3: """
def _loss(logits, labels):
    loss_fn = nn.CrossEntropyLoss()
    value = loss_fn(logits, labels)
    return loss_fn, value

def softmax(logits):
    return _loss(logits, np.zeros(len(logits), dtype=int))[0].cache_probs

def cross_entropy(logits, labels):
    return _loss(logits, labels)[1]

def cross_entropy_grad(logits, labels):
    return _loss(logits, labels)[0].backward()

def output_fisher(logits):
    return nn.CrossEntropyLoss().output_hessian(logits)

def output_fisher_sqrt(logits):
    return nn.CrossEntropyLoss().output_fisher_sqrt(logits)
""",
    4: """
def vec(X):
    return curvature.vec(X)

def unvec(v, rows):
    return curvature.unvec(v, rows)

def kron_matvec(A, G, X):
    return curvature.kron_matvec(A, G, X)

def kron_solve(A, G, X):
    return curvature.kron_solve(A, G, X)
""",
    5: """
def per_example_gradient(a, g, bias):
    a_bar = np.concatenate([a, np.ones((len(a), 1))], axis=1) if bias else a
    return statistics.layer_gradients(statistics.LayerStatistics(None, a_bar, g[None]))[0]

def fisher_from_jacobians(J, output_fisher):
    return np.einsum("nkp,nkl,nlq->pq", J, output_fisher, J) / len(J)

def empirical_fisher(grads):
    return grads.T @ grads / len(grads)
""",
    6: """
def _A(a, bias):
    a_bar = np.concatenate([a, np.ones((len(a), 1))], axis=1) if bias else a
    return a_bar.T @ a_bar / len(a)

def _G(grad_output):
    g = len(grad_output) * grad_output
    return g.T @ g / len(g)

def input_factor(a, bias):
    return _A(a, bias)

def grad_factor(grad_output):
    return _G(grad_output)

def kfac_factors_from_caches(net):
    return [(_A(layer.cache_input, layer.bias is not None), _G(layer.cache_grad_output))
            for layer in curvature.parametrised_layers(net)]
""",
    7: """
def trace_norm_pi(A, G):
    return factored_pi(A, G)

def damped_factors(A, G, damping):
    pi, root = float(factored_pi(A, G)), damping ** 0.5
    return A + pi * root * np.eye(len(A)), G + root / pi * np.eye(len(G))

def factored_damped_solve(A, G, V, damping):
    return kron.kron_solve_factored(A, G, V, damping)

def exact_damped_solve(A, G, V, damping):
    return kron.kron_solve(A, G, V, damping)
""",
    8: """
def augmented_gradient(weight_grad, bias_grad):
    matrix = weight_grad.reshape(len(weight_grad), -1)
    return matrix if bias_grad is None else np.concatenate([matrix, bias_grad[:, None]], axis=1)

def natural_gradients(factors, gradients, damping):
    return curvature.KFACBlockDiagonal(factors).precondition(gradients, damping, factored=True)

def kfac_step(net, loss_fn, X, y, lr, damping):
    net.zero_grad()
    loss = loss_fn(net(X), y)
    net.backward(loss_fn.backward())
    factors = curvature.kfac_factors(net, loss_fn, X, kind="true")
    direction = curvature.KFACBlockDiagonal(factors).solve(curvature.flatten(net, "grad"), damping, factored=True)
    curvature.assign(net, curvature.flatten(net) - lr * direction)
    return float(loss)
""",
}

# (exercise, the part that must fail, a wrong definition appended to the correct solution, words of the message)
WRONG = [
    (1, "1.1", "def linear_forward(x, W, b):\n    return x @ W.T  # the bias forgotten", "a missing or extra bias"),
    (1, "1.2", "_right = linear_backward\ndef linear_backward(dout, x, W, b):\n"
               "    dx, dW, db = _right(dout, x, W, b)\n    return dx, dW.T, db", "transpose"),
    (1, "1.2", "_right = linear_backward\ndef linear_backward(dout, x, W, b):\n"
               "    dx, dW, db = _right(dout, x, W, b)\n    return dx, dW, None if db is None else db / len(x)",
     "1/N"),
    (2, "2.1", "def output_size(size, kernel, stride, padding):\n    return (size - kernel) // stride + 1",
     "wrong values"),
    (2, "2.2", "def im2col(x, kernel, stride, padding):  # columns in (kh, kw, c) order\n"
               "    p = conv.im2col(x, kernel, stride, padding)\n"
               "    n, l = p.shape[:2]\n"
               "    return p.reshape(n, l, x.shape[1], *kernel).transpose(0, 1, 3, 4, 2).reshape(n, l, -1)",
     "wrong places"),
    (2, "2.3", "_right = conv2d_forward\ndef conv2d_forward(x, weight, bias, stride, padding):\n"
               "    out = _right(x, weight, bias, stride, padding)  # (N, OH, OW, C_out) reshaped, not transposed\n"
               "    return out.transpose(0, 2, 3, 1).reshape(out.shape)", "wrong"),
    (3, "3.1", "def softmax(logits):\n    e = np.exp(logits)\n    return e / e.sum(axis=1, keepdims=True)",
     "NaN or inf"),
    (3, "3.2", "_right = cross_entropy\ndef cross_entropy(logits, labels):\n"
               "    return _right(logits, labels) * len(logits)  # a sum, not a mean", "N ="),
    (3, "3.3", "_right = cross_entropy_grad\ndef cross_entropy_grad(logits, labels):\n"
               "    return _right(logits, labels) * len(logits)  # per example, not of the mean", "N ="),
    (3, "3.4", "def output_fisher(logits):\n    p = softmax(logits)\n    return p[:, :, None] * np.eye(p.shape[1])",
     "wrong values"),
    (3, "3.5", "def output_fisher_sqrt(logits):  # p instead of sqrt(p)\n"
               "    p = softmax(logits)\n    return p.T[:, :, None] * (np.eye(p.shape[1])[:, None, :] - p[None])",
     "Σ_c S[c, n] S[c, n]ᵀ"),
    (4, "4.1", "def vec(X):\n    return X.reshape(-1)  # stacks rows", "wrong places"),
    (4, "4.2", "def unvec(v, rows):\n    return v.reshape(rows, -1)  # fills rows", "wrong places"),
    (4, "4.3", "def kron_matvec(A, G, X):\n    return G @ X @ A", "wrong values"),
    (4, "4.4", "def kron_solve(A, G, X):\n    return np.linalg.solve(G, X) @ A  # A not inverted", "wrong values"),
    (5, "5.1", "def per_example_gradient(a, g, bias):  # vec of ā gᵀ: rows stacked\n"
               "    a_bar = np.concatenate([a, np.ones((len(a), 1))], axis=1) if bias else a\n"
               "    return np.einsum('no,ni->noi', g, a_bar).reshape(len(a), -1)", "wrong places"),
    (5, "5.2", "def fisher_from_jacobians(J, output_fisher):\n"
               "    return np.einsum('nkp,nkl,nlq->pq', J, output_fisher, J)  # no 1/N", "N ="),
    (5, "5.3", "def empirical_fisher(grads):\n    return np.cov(grads.T)", "wrong values"),
    (6, "6.1", "def input_factor(a, bias):\n    return a.T @ a / len(a)  # the bias coordinate forgotten",
     "one entry shorter along axis 0 and 1 (the bias column"),
    (6, "6.2", "def grad_factor(grad_output):\n    return grad_output.T @ grad_output / len(grad_output)",
     "1/N²"),
    (6, "6.3", "_right = kfac_factors_from_caches\ndef kfac_factors_from_caches(net):\n"
               "    return [(G, A) for A, G in _right(net)]", "A of layer 1"),
    (7, "7.1", "def trace_norm_pi(A, G):\n    return 1 / factored_pi(A, G)", "wrong values"),
    (7, "7.2", "def damped_factors(A, G, damping):  # π on the wrong side\n"
               "    pi, root = float(factored_pi(A, G)), damping ** 0.5\n"
               "    return A + root / pi * np.eye(len(A)), G + pi * root * np.eye(len(G))", "A + π√λ I"),
    (7, "7.3", "def factored_damped_solve(A, G, V, damping):  # π = 1\n"
               "    return kron.kron_solve_factored(A, G, V, damping, pi=1.0)", "wrong values"),
    (7, "7.4", "def exact_damped_solve(A, G, V, damping):  # (A + λI) ⊗ (G + λI)\n"
               "    return np.linalg.solve(G + damping * np.eye(len(G)), V) @ np.linalg.inv(A + damping * np.eye(len(A)))",
     "wrong values"),
    (8, "8.1", "def augmented_gradient(weight_grad, bias_grad):  # bias as the first column\n"
               "    matrix = weight_grad.reshape(len(weight_grad), -1)\n"
               "    return matrix if bias_grad is None else np.concatenate([bias_grad[:, None], matrix], axis=1)",
     "wrong places"),
    (8, "8.2", "def natural_gradients(factors, gradients, damping):  # exact damping instead of factored\n"
               "    return curvature.KFACBlockDiagonal(factors).precondition(gradients, damping)", "layer"),
    (8, "8.3", "_right = kfac_step\ndef kfac_step(net, loss_fn, X, y, lr, damping):  # no zero_grad\n"
               "    loss = loss_fn(net(X), y)\n    net.backward(loss_fn.backward())\n"
               "    factors = curvature.kfac_factors(net, loss_fn, X, kind='true')\n"
               "    direction = curvature.KFACBlockDiagonal(factors).solve(curvature.flatten(net, 'grad'), damping, factored=True)\n"
               "    curvature.assign(net, curvature.flatten(net) - lr * direction)\n    return float(loss)",
     "W̄ of layer"),
]


def write(tmp_path, text, name="solution.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def grade(number, path, seed=0):
    # The solutions here are built from the library, which the exercises forbid to students.
    report = exercises.grade(exercises.find(str(number)), path, seed=seed, allow_library=True)
    return report, {result.part.number: result for result in report.parts}


NUMBERS = [exercise.number for exercise in exercises.EXERCISES]


# --------------------------------------------------------------------------- #
# The exercises
# --------------------------------------------------------------------------- #
def test_there_are_eight_exercises_with_their_student_files():
    assert NUMBERS == list(range(1, 9))
    for exercise in exercises.EXERCISES:
        assert (EXERCISE_DIR / exercise.filename).is_file(), exercise.filename
        assert exercise.parts and all(part.hint and part.task for part in exercise.parts)
    assert (EXERCISE_DIR / "README.md").is_file()


@pytest.mark.parametrize("number", NUMBERS)
def test_the_untouched_student_file_fails_every_part_as_not_implemented(number):
    exercise = exercises.find(str(number))
    report, parts = grade(number, str(EXERCISE_DIR / exercise.filename))
    assert report.import_error is None
    assert report.exit_code == 1 and not report.passed
    assert [r.status for r in report.parts] == [exercises.NOT_IMPLEMENTED] * len(exercise.parts)
    for part in exercise.parts:
        assert parts[part.number].lines[0].startswith(f"Exercise {part.number}: "), parts[part.number].lines
    assert report.text().count("not implemented yet") == len(exercise.parts)


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_solution_built_from_the_library_passes_every_part(number, seed, tmp_path):
    report, _ = grade(number, write(tmp_path, HEADER + SOLUTIONS[number]), seed=seed)
    assert report.passed, report.text()
    assert report.exit_code == 0
    assert all(result.cases >= 3 for result in report.parts), "every part runs several random cases"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("number, part, wrong, words", WRONG, ids=[f"{w[1]}-{i}" for i, w in enumerate(WRONG)])
def test_a_plausible_mistake_fails_its_part_and_only_that_one(number, part, wrong, words, seed, tmp_path):
    path = write(tmp_path, HEADER + SOLUTIONS[number] + "\n" + wrong + "\n")
    report, parts = grade(number, path, seed=seed)
    assert report.exit_code == 1
    failed = [n for n, result in parts.items() if result.status != exercises.PASSED]
    assert failed == [part], report.text()
    text = "\n".join(parts[part].lines)
    assert words in text, text
    assert "hint:" in text


def test_every_part_is_shown_to_fail_on_some_mistake():
    caught = {part for _, part, _, _ in WRONG}
    assert caught == {part.number for exercise in exercises.EXERCISES for part in exercise.parts}


def test_the_cases_depend_on_the_seed_and_a_seed_reproduces_them():
    part = exercises.find("1").parts[0]
    first, again, other = (part.cases(np.random.default_rng([s, 1, 0])) for s in (5, 5, 6))
    assert all(np.array_equal(a.args[0], b.args[0]) for a, b in zip(first, again))
    assert any(a.args[0].shape != b.args[0].shape or not np.array_equal(a.args[0], b.args[0])
               for a, b in zip(first, other))


def test_messages_explain_shapes_and_exceptions(tmp_path):
    path = write(tmp_path, HEADER + SOLUTIONS[1] + """
def linear_forward(x, W, b):
    return x @ W  # a shape error: raises
def linear_backward(dout, x, W, b):
    return dout @ W, x.T @ dout, None if b is None else dout.sum(axis=0)  # dW transposed
""")
    _, parts = grade(1, path)
    text = "\n".join(parts["1.1"].lines)
    assert "raised ValueError" in text
    line = 1 + (HEADER + SOLUTIONS[1]).count("\n") + 2  # the student's line that raised
    assert f"(line {line} in linear_forward: return x @ W" in text, text
    text = "\n".join(parts["1.2"].lines)
    assert "dW: shape" in text and "(D_out, D_in)" in text and "transpose of the expected result" in text


def test_a_missing_function_and_a_wrong_return_type_are_reported(tmp_path):
    path = write(tmp_path, HEADER + "def vec(X):\n    return None\ndef unvec(v, rows):\n    return 'no'\n")
    report, parts = grade(4, path)
    assert "got None" in parts["4.1"].lines[1] and "missing return" in parts["4.1"].lines[1]
    assert "got a str" in parts["4.2"].lines[1]
    assert parts["4.3"].status == "FAILED" and "no function kron_matvec" in parts["4.3"].lines[0]
    assert report.exit_code == 1


def test_the_comparison_tolerance_and_its_diagnoses():
    from minikfac.exercises.feedback import RTOL, compare_arrays

    rng = np.random.default_rng(0)
    expected = rng.standard_normal((4, 3))
    scale = np.max(np.abs(expected))
    assert compare_arrays(expected, expected + 0.1 * RTOL * scale) is None
    assert compare_arrays(expected, expected.tolist()) is None  # lists are read as arrays
    nudged = expected.copy()
    nudged[2, 1] += 10 * RTOL * scale
    assert "worst entry at index (2, 1)" in compare_arrays(expected, nudged)
    assert "transpose of the expected result" in compare_arrays(expected, expected.T)
    assert "1/N" in compare_arrays(expected, expected / 4, known={"N": 4})
    assert "minus the expected one" in compare_arrays(expected, -expected)
    assert "wrong places" in compare_arrays(expected, expected[::-1])
    assert "NaN or inf" in compare_arrays(expected, np.full((4, 3), np.nan))
    assert "one entry longer along axis 1" in compare_arrays(expected, np.ones((4, 4)), "W̄", "(D_out, D_in + 1)")
    assert "(D_out, D_in + 1)" in compare_arrays(expected, np.ones((4, 4)), "W̄", "(D_out, D_in + 1)")


def test_the_grader_restores_the_backend_and_dtype_the_student_changed(tmp_path):
    import minikfac as mk

    path = write(tmp_path, HEADER + "mk.set_default_dtype('float32')\n" + SOLUTIONS[4])
    mk.set_default_dtype("float64")
    report, _ = grade(4, path)
    assert report.passed, report.text()
    assert mk.get_default_dtype() == np.float64


# --------------------------------------------------------------------------- #
# Files that do not import
# --------------------------------------------------------------------------- #
def test_a_syntax_error_is_reported_cleanly(tmp_path, capsys):
    path = write(tmp_path, "import numpy as np\n\ndef vec(X)\n    return X\n")
    status = cli.main(["check", "4", path, "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 1
    assert "could not be imported" in out and "line 3" in out and "SyntaxError" in out
    assert "Traceback" not in out and "seed 3" in out


def test_an_exception_at_import_is_reported_cleanly(tmp_path, capsys):
    path = write(tmp_path, "import numpy as np\nx = undefined_name + 1\n")
    status = cli.main(["check", "4", path])
    out = capsys.readouterr().out
    assert status == 1
    assert "raised NameError" in out and "undefined_name" in out and "line 2" in out
    assert "Traceback" not in out


# --------------------------------------------------------------------------- #
# The command line
# --------------------------------------------------------------------------- #
def test_cli_exit_codes_pass_fail_and_the_default_file(tmp_path, capsys, monkeypatch):
    solution = write(tmp_path, HEADER + SOLUTIONS[7])  # built from the library: a teacher's reference
    assert cli.main(["check", "7", solution, "--seed", "11", "--allow-library"]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 parts passed (all passed)" in out and "--seed 11" in out
    # The default file is tutorials/exercises/NN_name.py under the working directory: the stubs fail.
    monkeypatch.chdir(ROOT)
    assert cli.main(["check", "07_damping"]) == 1
    out = capsys.readouterr().out
    assert "07_damping.py" in out and "0 of 4 parts passed" in out
    seed = int(out.split(", seed ")[1].split()[0])  # a fresh seed, printed
    assert f"--seed {seed}" in out


@pytest.mark.parametrize("name", ["7", "07", "07_damping", "damping", "07_damping.py"])
def test_exercises_are_found_by_number_or_name(name):
    assert exercises.find(name).number == 7


@pytest.mark.parametrize("argv, words", [
    (["check", "9"], "unknown exercise '9'"),
    (["check", "softmax"], "unknown exercise 'softmax'"),
    (["check"], "which exercise?"),
    (["check", "3", "no/such/file.py"], "no file no/such/file.py"),
])
def test_cli_usage_errors_exit_2_with_a_clear_message(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert "minikfac check" in err


def test_cli_missing_default_file_names_the_place_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "installed_blank_path", lambda exercise: None)  # as in a checkout
    assert cli.main(["check", "3"]) == 2
    err = capsys.readouterr().err
    assert "03_softmax_cross_entropy.py" in err and str(tmp_path) in err and "PATH" in err


def test_cli_list(capsys):
    assert cli.main(["check", "--list"]) == 0
    out = capsys.readouterr().out
    for exercise in exercises.EXERCISES:
        assert exercise.filename in out
        assert all(part.function in out for part in exercise.parts)


def test_the_command_and_a_student_file_run_as_programs(tmp_path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "minikfac", "check", "1", "--seed", "4"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "1.2 linear_backward" in done.stdout, done.stdout + done.stderr
    # A student file checks itself when run directly.
    done = subprocess.run([sys.executable, str(EXERCISE_DIR / "04_kronecker_matvec.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "0 of 4 parts passed" in done.stdout, done.stdout + done.stderr


def test_cli_copy_writes_the_blank_files_and_never_overwrites(tmp_path, capsys):
    assert cli.main(["check", "--copy", str(tmp_path)]) == 0
    copied = tmp_path / "tutorials" / "exercises"
    assert sorted(p.name for p in copied.glob("0*.py")) == sorted(e.filename for e in exercises.EXERCISES)
    assert cli.main(["check", "--copy", str(tmp_path)]) == 2  # the files exist now: nothing is overwritten
    assert "already holds 01_linear_backward.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["check", "3", "--copy", str(tmp_path)])
