"""A job's report on disk: strict JSON, which any parser reads.

Python's ``json`` writes ``NaN`` and ``Infinity`` for non-finite floats, which
strict parsers (browsers, ``jq``, most languages) reject; a diverged run's
report would then be unreadable exactly when it matters. Here they become
``null``.
"""

import json
import math
import os


def strict_json(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, so that it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(report, path):
    """Write ``report`` to ``path`` as indented, strict JSON (non-finite numbers as null; folders
    created); returns ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(strict_json(report), f, indent=1, allow_nan=False)
        f.write("\n")
    return path
