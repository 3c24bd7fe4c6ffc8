"""Llama-3-8B-shaped models and checkpoints with random bf16 weights, built fast and within bounded memory.

Random values come from one pool of 2**26 N(0, 0.02) bf16 numbers, copied into each tensor from a pseudo-random
offset (drawing 8 billion normal numbers takes minutes on 2 cores; copying takes seconds). Norm weights are
ones, as Hugging Face initialises them. ``write_checkpoint`` writes an HF directory (config.json,
generation_config.json, safetensors shards of at most ``shard_bytes`` with model.safetensors.index.json) one
decoder layer at a time, so it never holds more than a shard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

SHAPE_8B = {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
            "num_key_value_heads": 8, "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
            "bos_token_id": 128000, "eos_token_id": 128001, "tie_word_embeddings": False}


class Pool:
    def __init__(self, seed: int = 0, size: int = 2**26) -> None:
        g = torch.Generator().manual_seed(seed)
        self.values = (torch.randn(size, generator=g) * 0.02).to(torch.bfloat16)
        self.g = torch.Generator().manual_seed(seed + 1)

    def fill_(self, t: torch.Tensor) -> torch.Tensor:
        flat = t.view(-1)
        n, size = flat.numel(), self.values.numel()
        done = 0
        while done < n:
            start = int(torch.randint(0, size, (1,), generator=self.g))
            take = min(n - done, size - start)
            flat[done:done + take].copy_(self.values[start:start + take])
            done += take
        return t


def config_dict(layers: int, **shape: object) -> dict[str, object]:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": layers,
            "torch_dtype": "bfloat16", "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
            **SHAPE_8B, **shape}


def layer_tensors(i: int, c: dict[str, object]) -> dict[str, tuple[int, ...]]:
    h, f = int(c["hidden_size"]), int(c["intermediate_size"])  # type: ignore[call-overload]
    d = h // int(c["num_attention_heads"])  # type: ignore[call-overload]
    kv = int(c["num_key_value_heads"]) * d  # type: ignore[call-overload]
    p = f"model.layers.{i}."
    return {p + "input_layernorm.weight": (h,), p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
            p + "post_attention_layernorm.weight": (h,), p + "mlp.gate_proj.weight": (f, h),
            p + "mlp.up_proj.weight": (f, h), p + "mlp.down_proj.weight": (h, f)}


def all_tensors(c: dict[str, object]) -> Iterator[dict[str, tuple[int, ...]]]:
    """Shapes in checkpoint order, one dict per part: embeddings, each layer, final norm and LM head."""
    v, h = int(c["vocab_size"]), int(c["hidden_size"])  # type: ignore[call-overload]
    yield {"model.embed_tokens.weight": (v, h)}
    for i in range(int(c["num_hidden_layers"])):  # type: ignore[call-overload]
        yield layer_tensors(i, c)
    yield {"model.norm.weight": (h,), "lm_head.weight": (v, h)}


def make(shape: tuple[int, ...], name: str, pool: Pool) -> torch.Tensor:
    t = torch.empty(shape, dtype=torch.bfloat16)
    return t.fill_(1.0) if name.endswith("norm.weight") else pool.fill_(t)


def write_checkpoint(directory: str | os.PathLike[str], layers: int, shard_bytes: int = 2 * 2**30, seed: int = 0,
                     **shape: object) -> Path:
    from safetensors.torch import save_file

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=False)
    c = config_dict(layers, **shape)
    (root / "config.json").write_text(json.dumps(c, indent=1))
    (root / "generation_config.json").write_text(json.dumps({"bos_token_id": c["bos_token_id"],
                                                              "eos_token_id": c["eos_token_id"]}))
    pool = Pool(seed)
    shards: list[dict[str, torch.Tensor]] = [{}]
    weight_map: dict[str, int] = {}
    files: list[str] = []

    def flush() -> None:
        name = f"part-{len(files):05d}.safetensors"
        save_file(shards[0], str(root / name), metadata={"format": "pt"})
        files.append(name)
        shards[0] = {}

    size = 0
    for part in all_tensors(c):
        for name, s in part.items():
            n = 2 * int(torch.Size(s).numel())
            if size and size + n > shard_bytes:
                flush()
                size = 0
            shards[0][name] = make(s, name, pool)
            weight_map[name] = len(files)
            size += n
    flush()
    total = len(files)
    final = [f"model-{i + 1:05d}-of-{total:05d}.safetensors" for i in range(total)]
    for old, new in zip(files, final, strict=True):
        os.replace(root / old, root / new)
    index = {"metadata": {"total_size": sum((root / f).stat().st_size for f in final)},
             "weight_map": {k: final[i] for k, i in weight_map.items()}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    return root


def random_model(layers: int, seed: int = 0, **shape: object) -> torch.nn.Module:
    """The in-memory LlamaForCausalLM of that shape, bf16, random weights (filled as ``write_checkpoint`` does)."""
    import transformers

    c = config_dict(layers, **shape)
    config = transformers.LlamaConfig(**{k: v for k, v in c.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    pool = Pool(seed)
    state = {}
    for part in all_tensors(c):
        for name, s in part.items():
            state[name] = make(s, name, pool)
    model.load_state_dict(state, assign=True, strict=False)
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)  # built on meta above: rebuild its buffers
    return model.eval()
