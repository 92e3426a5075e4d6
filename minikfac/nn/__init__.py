"""The framework: modules with explicit caches, losses, initialisers."""

from minikfac.nn import init
from minikfac.nn.activation import Flatten, Identity, ReLU, Sigmoid, Tanh
from minikfac.nn.conv import Conv2d
from minikfac.nn.linear import Linear
from minikfac.nn.likelihoods import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from minikfac.nn.loss import Loss
from minikfac.nn.module import Module, Parameter, Sequential, no_parameter_grads
from minikfac.nn.pool import AvgPool2d, MaxPool2d

__all__ = ["Module", "Parameter", "Sequential", "init", "no_parameter_grads",
           "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "ReLU", "Tanh", "Sigmoid", "Identity",
           "BCEWithLogitsLoss", "CrossEntropyLoss", "Loss", "MSELoss"]
