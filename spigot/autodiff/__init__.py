"""Torch estimators for the gradient of a structured argmax, functional and nn.Module forms."""

from spigot.autodiff.spigot_layer import SPIGOT, spigot
from spigot.autodiff.straight_through import StraightThrough, ste

__all__ = ["SPIGOT", "StraightThrough", "spigot", "ste"]
