"""Jobs: what the command line runs, each a function that returns its report.

=============  ===============================================================
:mod:`.train`  :func:`~.train.fit`, one experiment from names (``minikfac train``)
:mod:`.compare` the exact Fisher next to K-FAC and its rivals (``minikfac compare``)
:mod:`.race`   K-FAC against SGD and Adam, to a target loss (``minikfac bench``)
:mod:`.demo`   the comparison and a short race, as a report (``minikfac demo``)
=============  ===============================================================

Jobs may time, log and write files; only jobs and the command line draw
figures (:mod:`minikfac.plot`, imported when a figure is asked for).
"""

from minikfac.jobs import compare, demo, race, train

__all__ = ["compare", "demo", "race", "train"]
