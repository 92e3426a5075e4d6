"""Checkpoints: a run's state in an ``.npz`` file that loads without pickle.

Every array is stored as an entry of the ``.npz``; the rest is one JSON
document in the entry ``checkpoint`` that refers to arrays by entry name. A
run resumed from a checkpoint continues exactly, bit for bit, as the
uninterrupted run (:func:`minikfac.jobs.train.fit`).
"""

import contextlib
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from minikfac import backend

CHECKPOINT_FORMAT = "minikfac-checkpoint-1"


def encode(obj, arrays):
    """A JSON-ready copy of ``obj`` whose arrays are moved to ``arrays`` (a dict) and referenced by name.

    ``obj`` may nest arrays (any backend), numbers, strings, None, tuples, lists and
    dicts; anything else raises TypeError. :func:`decode` inverts it. Checkpoints
    and the exercises' grader (results from a student's process) use it: no pickle.
    """
    if backend.is_array(obj):
        name = f"array_{len(arrays)}"
        arrays[name] = backend.to_numpy(obj)
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        # JSON objects only have string keys; optimizer state is keyed by ints.
        # Pairs keep each key's type, and the order (parameter names come in network order).
        return {"__items__": [[encode(k, arrays), encode(v, arrays)] for k, v in obj.items()]}
    raise TypeError(f"checkpoint.save: cannot store a {type(obj).__name__} ({obj!r:.80})")


def decode(obj, arrays):
    """The object :func:`encode` made ``obj`` from, with its arrays taken from ``arrays``."""
    if isinstance(obj, list):
        return [decode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__tuple__" in obj:
            return tuple(decode(v, arrays) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {decode(k, arrays): decode(v, arrays) for k, v in obj["__items__"]}
        return {k: decode(v, arrays) for k, v in obj.items()}
    return obj


def save(path, net, optimizer, epoch, step, history, args, extra=None):
    """Write a checkpoint to ``path`` (an ``.npz`` file; written atomically).

    Contents: ``model`` (``net.state_dict()``), ``optimizer``
    (``optimizer.state_dict()``), ``epoch`` (finished epochs), ``step``
    (updates done), ``history``, ``args`` (the run's arguments, a dict of
    JSON values) and ``extra`` (any other JSON-ready dict).

    Format: every array is stored as an entry of the ``.npz``; the rest is one
    JSON document in the entry ``checkpoint`` that refers to arrays by entry
    name (``{"__array__": "array_3"}``), keeps tuples (``{"__tuple__": [...]}``)
    and dicts with non-string keys (``{"__items__": [[key, value], ...]}``).
    Nothing is pickled, so loading a checkpoint cannot run code. Floats go
    through JSON's shortest round-trip repr and arrays keep their dtype, so a
    reload is exact.
    """
    arrays = {}
    document = {
        "format": CHECKPOINT_FORMAT, "epoch": int(epoch), "step": int(step), "args": args,
        "history": history, "extra": extra or {},
        "model": encode(dict(net.state_dict()), arrays), "optimizer": encode(optimizer.state_dict(), arrays),
    }
    arrays["checkpoint"] = np.array(json.dumps(document))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # A temporary file of this save's own in the target folder, then an atomic rename: an interrupted
    # save never leaves a truncated checkpoint, and runs saving to the same path at once never share a
    # temporary file (the last complete save wins). A failed save removes its temporary file.
    handle, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".partial", dir=folder)
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    return path


def load(path):
    """Read a checkpoint written by :func:`save`; returns its dict.

    Keys: ``model`` (dict name -> NumPy array, network order), ``optimizer``
    (the optimizer's state_dict), ``epoch``, ``step``, ``history``, ``args``,
    ``extra``, ``format``. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for any other file that is not a whole minikfac checkpoint
    (truncated, corrupted, empty, another format).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(str(arrays.pop("checkpoint")))
        if not isinstance(document, dict):
            raise ValueError(f"its document is a {type(document).__name__}, not a dict")
        if document.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path!r} has format {document.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        for key in ("model", "optimizer"):
            document[key] = decode(document[key], arrays)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        # A truncated, bit-flipped, empty or foreign file: whatever NumPy, zipfile or json said, one kind of error.
        if isinstance(err, ValueError) and str(err).startswith(repr(path)):
            raise
        raise ValueError(f"{path!r} is not a minikfac checkpoint, or not a whole one ({type(err).__name__}: {err})") from None
    return document
