"""Out-of-core pruning of Hugging Face checkpoints larger than memory: ``prune_checkpoint(src, dst, ...)``.

Not a second engine: the same capture (on the meta device), criteria, selection, plan and surgery slicing as
``sc.prune``, run on one part of the model at a time (embeddings, each decoder layer, final norm and head).
"""

from secateurs.outofcore.prune import CheckpointReport, prune_checkpoint

__all__ = ["CheckpointReport", "prune_checkpoint"]
