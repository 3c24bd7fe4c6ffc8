"""Sentence embeddings from an encoder: mean pooling over the attention mask (the sentence-transformers recipe).

``MeanPooled(model)`` is a module whose output is one embedding per sequence, so ``sc.recover`` can distil
embeddings directly (``distill_loss="cosine"`` or ``"mse"``). It does not import transformers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from secateurs.errors import InvalidTypeError


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (batch, tokens, width) over the tokens where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def last_hidden_state(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None and isinstance(output, (tuple, list)) and output:
        hidden = output[0]
    if not isinstance(hidden, torch.Tensor):
        raise InvalidTypeError(
            f"cannot find the token states in a model output of type {type(output).__name__}; the encoder must "
            "return a tensor, a tuple whose first element is the token states, or an object with .last_hidden_state"
        )
    return hidden


class MeanPooled(nn.Module):
    """``encoder`` followed by attention-masked mean pooling (and L2 normalisation when ``normalize``).

    Call it with the encoder's keyword inputs (``input_ids``, ``attention_mask``, ...); the output is a
    (batch, width) tensor. all-MiniLM-L6-v2 and most sentence-transformers models are mean-pooled and
    normalized (their ``modules.json`` lists ``Pooling`` and ``Normalize``).
    """

    def __init__(self, encoder: nn.Module, normalize: bool = False):
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        hidden = last_hidden_state(self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs))
        pooled = mean_pool(hidden, attention_mask)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled
