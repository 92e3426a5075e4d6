"""The process a student's file runs in: it imports the file and calls its functions, nothing more.

The grader (:mod:`.grader`) starts this file as a script (``python student_process.py``)
in a fresh, empty working folder, with the student's own folder importable. It
never grades: it receives calls (a function's name, its arguments, pickled by
the grader) on its standard input, and sends back only *data* — what the
function returned, as arrays and JSON (:func:`minikfac.checkpoint.encode`, no
pickle) — on a pipe of its own. The grader compares that with the library's
answer in its own process, so nothing the student's code does here (patching
modules, exiting, looping) can change a verdict; it can only fail a part.

The library modules an exercise forbids (``minikfac.curvature`` for the
Kronecker exercise, say) cannot be imported here: an import raises
``ImportError`` saying so, and the grader reports it.

Protocol (every message a 4-byte big-endian length, then the bytes):

- grader → here, on stdin: a pickle of ``(function name, args, result function or None)``;
- here → grader, on the result pipe: a JSON header, then (if it says so) an ``.npz`` of the arrays.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import io
import json
import os
import pickle
import re
import struct
import sys
import traceback
import warnings


def _read(stream):
    header = stream.read(4)
    if len(header) < 4:
        return None
    return stream.read(struct.unpack(">I", header)[0])


def _write(fd, payload):
    data = struct.pack(">I", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


class ForbiddenImports(importlib.abc.MetaPathFinder):
    """A finder that refuses the modules ``forbidden`` (and their submodules), naming the exercise."""

    def __init__(self, forbidden, exercise):
        self.forbidden, self.exercise = tuple(forbidden), exercise

    def find_spec(self, name, path=None, target=None):
        if any(name == f or name.startswith(f + ".") for f in self.forbidden):
            raise ImportError(f"{name} is not allowed in exercise {self.exercise}: write it yourself "
                              f"(forbidden here: {', '.join(self.forbidden)})", name=name)
        return None


def _student_line(error, path):
    target = os.path.realpath(path)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.realpath(f.filename) == target]
    if not frames:
        return ""
    frame = frames[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f" (line {frame.lineno} in {frame.name}{code})"


def _import_student(path):
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    name = f"minikfac_student_{stem}"
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # some code (dataclasses, pickle) looks its module up there
    try:
        loader.exec_module(module)
    except SyntaxError as err:
        lines = [f"{path}, line {err.lineno}: {type(err).__name__}: {err.msg}"]
        if err.text:
            lines.append("    " + err.text.rstrip("\n"))
            if err.offset:
                lines.append("    " + " " * (err.offset - 1) + "^")
        return None, "\n".join(lines)
    except BaseException as err:  # noqa: BLE001  (SystemExit, KeyboardInterrupt: the file's own doing)
        return None, f"importing {path} raised {type(err).__name__}: {err}{_student_line(err, path)}"
    return module, None


def _keep_dtypes(obj, np):
    """``obj`` with every NumPy scalar made a 0-d array, so that its dtype (float32, say) reaches the grader."""
    if isinstance(obj, np.generic) and not isinstance(obj, np.bool_):
        return np.asarray(obj)
    if isinstance(obj, tuple):
        return tuple(_keep_dtypes(v, np) for v in obj)
    if isinstance(obj, list):
        return [_keep_dtypes(v, np) for v in obj]
    return obj


def main(argv):
    result_fd, path, exercise, forbidden = int(argv[1]), argv[2], argv[3], [f for f in argv[4].split(",") if f]
    import numpy as np

    from minikfac import backend, checkpoint

    def send(header, arrays=None):
        _write(result_fd, json.dumps(header).encode())
        if arrays is not None:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            _write(result_fd, buffer.getvalue())

    for name in list(sys.modules):  # nothing forbidden stays loaded, and nothing forbidden loads later
        if any(name == f or name.startswith(f + ".") for f in forbidden):
            del sys.modules[name]
    sys.meta_path.insert(0, ForbiddenImports(forbidden, exercise))
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))  # the student's helper modules
    backend.set_backend("numpy")
    backend.set_default_dtype("float64")
    module, error = _import_student(path)
    send({"imported": module is not None, "error": error})
    if module is None:
        return
    stdin = sys.stdin.buffer
    while True:
        message = _read(stdin)
        if message is None:
            return
        function_name, args, result = pickle.loads(message)
        function = getattr(module, function_name, None)
        if not callable(function):
            send({"status": "missing"})
            continue
        backend.set_backend("numpy")  # again for every call, whatever the student's code set
        backend.set_default_dtype("float64")
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # overflow warnings: the NaN/inf check explains them
                returned = function(*args)
            got = result(args, returned) if result is not None else returned
        except NotImplementedError as err:
            send({"status": "not implemented", "message": str(err)})
            continue
        except BaseException as err:  # noqa: BLE001  (whatever the student's function raised, SystemExit too)
            if isinstance(err, SystemExit):
                send({"status": "raised", "type": "SystemExit",
                      "message": f"the function called sys.exit({err.code!r})", "line": _student_line(err, path)})
                continue
            send({"status": "raised", "type": type(err).__name__, "message": str(err),
                  "line": _student_line(err, path)})
            continue
        arrays = {}
        try:
            document = checkpoint.encode(_keep_dtypes(got, np), arrays)
            json.dumps(document)
        except (TypeError, ValueError) as err:
            send({"status": "unreadable", "message": f"returned a {type(got).__name__}, which the grader cannot "
                                                     f"read back ({err}); return arrays, numbers, tuples or lists"})
            continue
        send({"status": "returned", "document": document}, arrays)


if __name__ == "__main__":
    main(sys.argv)
