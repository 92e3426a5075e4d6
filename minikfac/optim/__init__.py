"""Optimizers: first-order SGD and Adam, and K-FAC (which uses curvature/).

Each updates ``Parameter.data`` in place from ``Parameter.grad`` on ``step()``
and saves/restores its state with ``state_dict()``/``load_state_dict()``.
K-FAC's step also needs the batch, ``step(X, y)``: ``optimizer.needs_batch``
says which call a training loop makes.
"""

from minikfac.optim.adam import Adam
from minikfac.optim.kfac import KFAC
from minikfac.optim.optimizer import Optimizer
from minikfac.optim.sgd import SGD

__all__ = ["KFAC", "SGD", "Adam", "Optimizer"]
