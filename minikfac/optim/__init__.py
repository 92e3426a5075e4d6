"""Optimizers: first-order SGD and Adam here; K-FAC (which uses curvature/) beside them.

Each updates ``Parameter.data`` in place from ``Parameter.grad`` on ``step()``
and saves/restores its state with ``state_dict()``/``load_state_dict()``.
"""

from minikfac.optim.adam import Adam
from minikfac.optim.optimizer import Optimizer
from minikfac.optim.sgd import SGD

__all__ = ["SGD", "Adam", "Optimizer"]
