"""Optimizers: first-order SGD and Adam; Muon, Shampoo and SOAP (per weight matrix); K-FAC (which uses curvature/).

Each updates ``Parameter.data`` in place from ``Parameter.grad`` on ``step()``
and saves/restores its state with ``state_dict()``/``load_state_dict()``.
K-FAC's step also needs the batch, ``step(X, y)``: ``optimizer.needs_batch``
says which call a training loop makes. Muon (Jordan et al. 2024), Shampoo
(Gupta et al. 2018; Shi et al. 2023) and SOAP (Vyas et al. 2024) precondition
each weight matrix from its gradients alone (no curvature pass, ``step()``):
the first-order neighbours of K-FAC's Kronecker factors.
"""

from minikfac.optim.adam import Adam
from minikfac.optim.kfac import KFAC
from minikfac.optim.muon import Muon
from minikfac.optim.optimizer import Optimizer
from minikfac.optim.sgd import SGD
from minikfac.optim.shampoo import Shampoo
from minikfac.optim.soap import SOAP

__all__ = ["KFAC", "SGD", "SOAP", "Adam", "Muon", "Optimizer", "Shampoo"]
