"""Sheared-LLaMA (Xia et al., 2023): learn hard-concrete masks that drive a decoder to an exact target shape, then
prune by them.

* ``masks``: the hard-concrete distribution and the structures a target constrains.
* ``layout``: where the masks act (``LAYOUTS``, a Registry by model class) and the target read from config fields.
* ``hooks``: the masks applied with forward hooks, no model code changed.
* ``domains``: batches from one stream or several data domains, with dynamic batch loading.
* ``importance``: the masks' data-aware start (units ranked by what they write to the residual stream).
* ``run``: ``shear()``, the training loop with the Lagrangian, then annealing on the final structure; ``state``:
  resumable checkpoints.
* ``finish``: fold the final mask values (1 after annealing) into the weights, prune, check against the masked model.
"""

from secateurs.sheared.config import ShearConfig, ShearResult
from secateurs.sheared.layout import LAYOUTS, register_layout
from secateurs.sheared.run import shear

__all__ = ["LAYOUTS", "ShearConfig", "ShearResult", "register_layout", "shear"]
