"""Depth pruning: remove whole residual blocks (decoder layers) of a model.

* ``locate``: where the blocks live (a ``ModuleList``/``Sequential`` of same-type blocks, or the
  container a registered :class:`DepthAdapter` names, e.g. an HF model's decoder layer list).
* ``criteria``: layer importance from calibration batches (``block_influence``, ``angular``).
* ``planning``: pick the blocks to drop and record them in a :class:`~secateurs.plans.Plan`.
* ``surgery``: remove the blocks in place, renumber ``layer_idx`` and let the adapter rewrite configs.
* ``reference``: the original model with those blocks replaced by identity, the exact oracle of
  verification.

Nothing here imports transformers; the Hugging Face adapter registers itself from
``secateurs.integrations.hf.depth``.
"""

from secateurs.graph.blocks import DepthAdapter, register_depth_adapter

__all__ = ["DepthAdapter", "register_depth_adapter"]
