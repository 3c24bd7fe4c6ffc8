"""Sequential (one block at a time) calibration gives the full collection's statistics, holding one boundary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import secateurs as sc
from secateurs.calibration import CalibrationData, Statistics, collect
from secateurs.calibration.sequential import BlockStep, collect_sequential, find_blocks
from secateurs.errors import InvalidArgumentError

N_BATCHES, BATCH, SEQ, HIDDEN, LAYERS = 3, 2, 8, 64, 3


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=HIDDEN, intermediate_size=96, num_hidden_layers=LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _batches() -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, 128, (BATCH, SEQ), generator=g), "use_cache": False}
            for _ in range(N_BATCHES)]


def _assert_same(a: Statistics, b: Statistics) -> None:
    assert a.n_batches == b.n_batches
    for table in ("inputs", "outputs"):
        ta, tb = getattr(a, table), getattr(b, table)
        assert sorted(ta) == sorted(tb)
        for key in ta:
            for x, y in zip(ta[key].tensors(), tb[key].tensors(), strict=True):
                torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9, msg=f"{table}[{key}]")


def test_statistics_equal_full_collection() -> None:
    model = _llama()
    full = collect(model, _batches())
    seq = collect(model, CalibrationData(_batches(), sequential=True))
    assert "lm_head" in seq.inputs and "model.embed_tokens" in seq.outputs  # head and tail recorded once
    assert "model.layers.2.mlp.down_proj" in seq.inputs
    _assert_same(full, seq)


def test_input_moments_equal_full_collection() -> None:
    model = _llama()
    paths = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.2.mlp.down_proj",
             "lm_head"]
    full = collect(model, _batches(), moments=paths, channels=False)
    seq = collect(model, CalibrationData(_batches(), sequential=True), moments=paths, channels=False)
    assert sorted(full.moments) == sorted(seq.moments) == sorted(paths)
    assert seq.moments[paths[0]] is seq.moments[paths[1]]  # q and k read one input: one Gram matrix
    for key in paths:
        for x, y in zip(full.moments[key].tensors(), seq.moments[key].tensors(), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9, msg=key)


def test_one_block_boundary_held_and_blocks_run_layer_by_layer() -> None:
    model = _llama()
    order: list[int] = []
    for i, block in enumerate(model.model.layers):
        block.register_forward_pre_hook(lambda m, a, i=i: order.append(i))
    trace: list[BlockStep] = []
    collect_sequential(model, CalibrationData(_batches(), sequential=True), trace=trace)
    # the capture pass stops at block 0 (one call per batch), then every block runs on every batch, in block order
    assert order == [0] * N_BATCHES + [b for b in range(LAYERS) for _ in range(N_BATCHES)]
    assert [s.block for s in trace] == list(range(LAYERS))
    per_boundary = N_BATCHES * BATCH * SEQ * HIDDEN
    for step in trace:  # the inputs and outputs of one block for every batch, nothing more
        assert step.held_tensors == 2 * N_BATCHES
        assert step.held_elements == 2 * per_boundary


def test_plans_equal_with_sequential_calibration() -> None:
    model = _llama()
    inputs = _batches()[0]
    kwargs = {"ratio": {"heads": 0.5, "channels": 0.25}, "importance": "wanda"}
    a = sc.plan(model, inputs, calibration=_batches(), **kwargs)
    b = sc.plan(model, inputs, calibration=CalibrationData(_batches(), sequential=True), **kwargs)
    assert a.keep == b.keep


def test_gradients_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="sequential=False"):
        collect(_llama(), CalibrationData(_batches(), sequential=True), loss_fn=lambda o, b: o.logits.mean(),
                grads=True)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return h + scale * torch.relu(self.fc(h))


class _Stack(nn.Module):
    def __init__(self, per_layer_scale: bool) -> None:
        super().__init__()
        self.inp, self.out = nn.Linear(4, 8), nn.Linear(8, 2)
        self.blocks = nn.ModuleList(_Block() for _ in range(3))
        self.heads = nn.ModuleList([nn.Linear(2, 2)])  # a smaller list: not the blocks
        self.per_layer_scale = per_layer_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for i, b in enumerate(self.blocks):
            h = b(h, scale=1.0 + i if self.per_layer_scale else 0.5)
        return self.heads[0](self.out(h))


def test_generic_stack_and_block_detection() -> None:
    torch.manual_seed(0)
    model = _Stack(per_layer_scale=False)
    assert find_blocks(model)[0] == "blocks"
    batches = [torch.randn(5, 4) for _ in range(2)]
    _assert_same(collect(model, batches), collect(model, CalibrationData(batches, sequential=True, blocks="blocks")))
    with pytest.raises(InvalidArgumentError, match="names no submodule"):
        collect(model, CalibrationData(batches, sequential=True, blocks="nope"))


def test_per_block_keyword_arguments_refused() -> None:
    model = _Stack(per_layer_scale=True)
    with pytest.raises(InvalidArgumentError, match="different keyword arguments"):
        collect(model, CalibrationData([torch.randn(5, 4)], sequential=True))


def test_modules_after_the_blocks_run_only_when_their_statistics_are_needed(monkeypatch):
    model, batches = _llama(), _batches()
    full = collect(model, CalibrationData(batches, sequential=True))
    calls = []
    head = model.lm_head
    monkeypatch.setattr(head, "forward", lambda x: calls.append(1) or nn.Linear.forward(head, x))
    blocks_only = collect(model, CalibrationData(batches, sequential=True), needed=["model.layers.1.mlp.down_proj"])
    assert calls == [] and "lm_head" not in blocks_only.inputs  # the head never ran
    for key, s in blocks_only.inputs.items():
        assert all(torch.equal(x, y) for x, y in zip(s.tensors(), full.inputs[key].tensors(), strict=True))
    with_head = collect(model, CalibrationData(batches, sequential=True), needed=["lm_head"])
    assert len(calls) == N_BATCHES and "lm_head" in with_head.inputs
