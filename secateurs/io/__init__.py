"""Files: pickle-free save/load of pruned models, model specs and input specs."""

from secateurs.io.saving import load, read_manifest, read_masks, read_plan, save

__all__ = ["load", "read_manifest", "read_masks", "read_plan", "save"]
