"""Module classes surgery swaps in when a stock module's forward cannot run at its pruned shape."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """MultiheadAttention masks: a bool mask marks positions that may *not* attend (-inf)."""
    if mask is None or mask.is_floating_point():
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class PrunedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose q/k/v width (``num_heads * head_dim``) may differ from ``embed_dim``.

    Same arguments, outputs and numerics as the stock module (``F.multi_head_attention_forward``),
    written with ``F.linear``, ``view`` and ``scaled_dot_product_attention`` so it exports cleanly.
    ``bias_k``/``bias_v`` and ``add_zero_attn`` are not supported (surgery refuses those modules).
    ``_packed_qkv`` says whether q/k/v share ``in_proj_weight``; surgery sets ``_qkv_same_embed_dim``
    to False so fused fast paths elsewhere (``nn.TransformerEncoderLayer``) never bypass this forward.
    """

    def _reset_parameters(self) -> None:
        if getattr(self, "_packed_qkv", False):
            nn.init.xavier_uniform_(self.in_proj_weight)
            if self.in_proj_bias is not None:
                nn.init.constant_(self.in_proj_bias, 0.0)
                nn.init.constant_(self.out_proj.bias, 0.0)
            return
        super()._reset_parameters()

    def forward(  # type: ignore[override]
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, tgt, src = query.shape[0], query.shape[1], key.shape[1]
        heads, d = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        q = q.view(n, tgt, heads, d).transpose(1, 2)
        k = k.view(n, src, heads, d).transpose(1, 2)
        v = v.view(n, src, heads, d).transpose(1, 2)
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint.")
        causal = is_causal and key_padding_mask is None and not need_weights
        mask = None if causal else self._merged_mask(key_padding_mask, attn_mask, n, tgt, src, query.dtype)
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q * math.sqrt(1.0 / float(d)), k.transpose(-2, -1))
            if mask is not None:
                scores = scores + mask
            attn = F.softmax(scores, dim=-1)
            if dropout_p > 0.0:
                attn = F.dropout(attn, p=dropout_p)
            out = torch.matmul(attn, v)
            weights = attn.mean(dim=1) if average_attn_weights else attn
        else:
            out = F.scaled_dot_product_attention(q, k, v, mask, dropout_p, causal)
        out = F.linear(out.transpose(1, 2).reshape(n, tgt, heads * d), self.out_proj.weight, self.out_proj.bias)
        if not batched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _project(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inner = self.num_heads * self.head_dim
        if getattr(self, "_packed_qkv", self._qkv_same_embed_dim):
            w_q, w_k, w_v = self.in_proj_weight.split(inner)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q, b_k, b_v = (None, None, None) if self.in_proj_bias is None else self.in_proj_bias.split(inner)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def _merged_mask(self, key_padding_mask: torch.Tensor | None, attn_mask: torch.Tensor | None,
                     n: int, tgt: int, src: int, dtype: torch.dtype) -> torch.Tensor | None:
        mask = _float_mask(attn_mask, dtype)
        if mask is not None:
            mask = mask.view(1, 1, tgt, src) if mask.dim() == 2 else mask.view(n, self.num_heads, tgt, src)
        padding = _float_mask(key_padding_mask, dtype)
        if padding is not None:
            padding = padding.view(n, 1, 1, src)
            mask = padding if mask is None else mask + padding
        return mask
