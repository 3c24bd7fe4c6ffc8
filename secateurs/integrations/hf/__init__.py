"""Hugging Face transformers: surgery handlers per model family and config sync.

Imported lazily by ``secateurs.surgery.registry.load_for`` when a model has transformers modules
(through ``handlers``). One file per family (``llama.py``, ``gpt2.py``, ...); ``_common.py`` holds
the shared helpers. This package's ``__init__`` does not import transformers.

Pruning only the FFN of a transformer (the hidden size kept)::

    from secateurs.integrations.hf import non_ffn_modules
    sc.prune(model, inputs, ratio={"channels": 0.3}, ignore=non_ffn_modules(model))
"""

from secateurs.integrations.hf._common import non_ffn_modules
from secateurs.integrations.hf.pooling import MeanPooled, mean_pool

__all__ = ["MeanPooled", "mean_pool", "non_ffn_modules"]
