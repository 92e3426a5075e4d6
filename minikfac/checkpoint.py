"""Checkpoints: a run's state in an ``.npz`` file that loads without pickle.

Every array is stored as an entry of the ``.npz``; the rest is one JSON
document in the entry ``checkpoint`` that refers to arrays by entry name. A
run resumed from a checkpoint continues exactly, bit for bit, as the
uninterrupted run (:func:`minikfac.jobs.train.fit`).
"""

import json
import os

import numpy as np

from minikfac import backend

CHECKPOINT_FORMAT = "minikfac-checkpoint-1"


def _encode(obj, arrays):
    """A JSON-ready copy of ``obj`` whose arrays are moved to ``arrays`` and referenced by name."""
    if backend.is_array(obj):
        name = f"array_{len(arrays)}"
        arrays[name] = backend.to_numpy(obj)
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        # JSON objects only have string keys; optimizer state is keyed by ints.
        # Pairs keep each key's type, and the order (parameter names come in network order).
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    raise TypeError(f"checkpoint.save: cannot store a {type(obj).__name__} ({obj!r:.80})")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        if "__array__" in obj:
            return arrays[obj["__array__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, arrays) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__items__"]}
        return {k: _decode(v, arrays) for k, v in obj.items()}
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
        "model": _encode(dict(net.state_dict()), arrays), "optimizer": _encode(optimizer.state_dict(), arrays),
    }
    arrays["checkpoint"] = np.array(json.dumps(document))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = path + ".partial"
    # Write then rename, so an interrupted save never leaves a truncated checkpoint behind.
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
    os.replace(temporary, path)
    return path


def load(path):
    """Read a checkpoint written by :func:`save`; returns its dict.

    Keys: ``model`` (dict name -> NumPy array, network order), ``optimizer``
    (the optimizer's state_dict), ``epoch``, ``step``, ``history``, ``args``,
    ``extra``, ``format``. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for a file that is not a minikfac checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(str(arrays.pop("checkpoint")))
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path!r} is not a minikfac checkpoint ({err})") from None
    if document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path!r} has format {document.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    for key in ("model", "optimizer"):
        document[key] = _decode(document[key], arrays)
    return document
