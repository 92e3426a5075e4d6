"""Jobs: what the command line runs, each a function that returns its report.

===================  ====================================================================
:mod:`.train`        :func:`~.train.fit`, one experiment from names (``minikfac train``)
:mod:`.compare`      the exact Fisher next to K-FAC and its rivals (``minikfac compare``)
:mod:`.race`         K-FAC against SGD and Adam, to a target loss (``minikfac bench``)
:mod:`.race_tracks`  the race's problems, their data, and how a run's loss is measured
:mod:`.step_cost`    the seconds of one step of each optimizer
:mod:`.demo`         the comparison and a short race, as a report (``minikfac demo``)
===================  ====================================================================

Jobs may time, log and write files; only jobs and the command line draw
figures (:mod:`minikfac.plot`, imported when a figure is asked for).
"""

from minikfac.jobs import compare, demo, output, race, race_tracks, step_cost, train

__all__ = ["compare", "demo", "output", "race", "race_tracks", "step_cost", "train"]
