"""The model, data and target the sc.shear tests share."""

import torch

from secateurs.testing.hf import tiny, token_batches

TARGET = {"num_hidden_layers": 2, "hidden_size": 48, "intermediate_size": 64, "num_attention_heads": 2,
          "num_key_value_heads": 1}


def small_llama():
    return tiny("llama", layers=3).model  # hidden 64, FFN 128, 4 query heads in 2 KV groups


def batches(n: int = 4) -> list[dict[str, torch.Tensor]]:
    return token_batches(n, seed=5, seq_len=12)
