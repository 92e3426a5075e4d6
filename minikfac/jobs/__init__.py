"""Jobs: what the command line runs, each a function that returns its report.

:mod:`.train` (``fit``: one experiment from names), :mod:`.compare` (the exact
Fisher next to K-FAC and its rivals), :mod:`.race` (K-FAC against SGD and
Adam), :mod:`.demo` (the comparison and the race, as a report). Only jobs and
the command line draw figures (:mod:`minikfac.plot`).
"""
