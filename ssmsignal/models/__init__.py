"""Torch modules built from the SSM layers.

* :class:`SequenceModel` (with :class:`BackboneConfig`): encoder -> residual SSM blocks ->
  masked mean pooling -> head; the network behind the classifiers and regressors.
* :class:`SaShiMi`: the multi-scale autoregressive audio model behind ``AudioGenerator``.
"""
from .backbone import BackboneConfig, SequenceModel, masked_mean
from .sashimi import SaShiMi

__all__ = ["BackboneConfig", "SaShiMi", "SequenceModel", "masked_mean"]
