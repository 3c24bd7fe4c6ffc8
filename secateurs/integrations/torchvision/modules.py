"""torchvision attention modules whose forward derives the head width from the input width.

After pruning, the q/k/v width (``num_heads * head_dim``) differs from the block width and the
stock forwards reshape wrongly; these subclasses read ``num_heads``/``head_dim`` and keep the
original softmax scale (a constant of the captured graph), so they equal the masked original.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2


def _shift_mask(x: Tensor, pad_h: int, pad_w: int, window: list[int], shift: list[int]) -> Tensor:
    """The stock shifted-window attention mask: -100 between tokens from different regions."""
    mask = x.new_zeros((pad_h, pad_w))
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            mask[h[0] : h[1], w[0] : w[1]] = count
            count += 1
    mask = mask.view(pad_h // window[0], window[0], pad_w // window[1], window[1])
    mask = mask.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class _PrunedWindowAttention:
    """Mixin: ``torchvision.models.swin_transformer.shifted_window_attention`` with a free head width."""

    num_heads: int
    head_dim: int
    scale: float
    window_size: list[int]
    shift_size: list[int]
    attention_dropout: float
    dropout: float
    training: bool
    qkv: torch.nn.Linear
    proj: torch.nn.Linear
    get_relative_position_bias: Callable[[], Tensor]  # provided by the torchvision base class

    def _window_attention(self, x: Tensor, logit_scale: Tensor | None) -> Tensor:
        b, h, w, c = x.shape
        window, heads, d = self.window_size, self.num_heads, self.head_dim
        pad_r = (window[1] - w % window[1]) % window[1]
        pad_b = (window[0] - h % window[0]) % window[0]
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, pad_h, pad_w, _ = x.shape
        shift = [0 if window[0] >= pad_h else self.shift_size[0], 0 if window[1] >= pad_w else self.shift_size[1]]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        n_windows = (pad_h // window[0]) * (pad_w // window[1])
        x = x.view(b, pad_h // window[0], window[0], pad_w // window[1], window[1], c)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * n_windows, window[0] * window[1], c)
        qkv_bias: Tensor | None = self.qkv.bias
        if logit_scale is not None and qkv_bias is not None:
            length = qkv_bias.numel() // 3
            qkv_bias = torch.cat([qkv_bias[:length], torch.zeros_like(qkv_bias[length : 2 * length]), qkv_bias[2 * length :]])
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        qkv = qkv.reshape(x.size(0), x.size(1), 3, heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if logit_scale is not None:
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(logit_scale, max=math.log(100.0)).exp()
        else:
            attn = (q * self.scale).matmul(k.transpose(-2, -1))
        attn = attn + self.get_relative_position_bias()
        if sum(shift) > 0:
            mask = _shift_mask(x, pad_h, pad_w, window, shift)
            attn = attn.view(x.size(0) // n_windows, n_windows, heads, x.size(1), x.size(1))
            attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, x.size(1), x.size(1))
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout, training=self.training)
        x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), heads * d)
        x = F.dropout(F.linear(x, self.proj.weight, self.proj.bias), p=self.dropout, training=self.training)
        c_out = x.shape[-1]
        x = x.view(b, pad_h // window[0], pad_w // window[1], window[0], window[1], c_out)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c_out)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()


class PrunedShiftedWindowAttention(_PrunedWindowAttention, ShiftedWindowAttention):
    def forward(self, x: Tensor) -> Tensor:
        return self._window_attention(x, None)


class PrunedShiftedWindowAttentionV2(_PrunedWindowAttention, ShiftedWindowAttentionV2):
    def forward(self, x: Tensor) -> Tensor:
        return self._window_attention(x, self.logit_scale)


class PrunedRelativePositionalMultiHeadAttention(RelativePositionalMultiHeadAttention):
    """MaxViT attention whose ``n_heads * head_dim`` may differ from the block width."""

    def forward(self, x: Tensor) -> Tensor:
        b, g, p, _ = x.shape
        heads, d = self.n_heads, self.head_dim
        q, k, v = torch.chunk(self.to_qkv(x), 3, dim=-1)
        q = q.reshape(b, g, p, heads, d).permute(0, 1, 3, 2, 4)
        k = k.reshape(b, g, p, heads, d).permute(0, 1, 3, 2, 4) * self.scale_factor
        v = v.reshape(b, g, p, heads, d).permute(0, 1, 3, 2, 4)
        attn = F.softmax(torch.einsum("B G H I D, B G H J D -> B G H I J", q, k) + self.get_relative_positional_bias(), dim=-1)
        out = torch.einsum("B G H I J, B G H J D -> B G H I D", attn, v)
        return self.merge(out.permute(0, 1, 3, 2, 4).reshape(b, g, p, heads * d))
