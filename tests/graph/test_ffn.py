"""``ffn`` is the intermediate width found from the graph, never attention channels; unmet ratios say so."""

from __future__ import annotations

import warnings

import pytest
import torch

import secateurs as sc
from secateurs.errors import NothingPrunedWarning
from secateurs.selection.select import channel_role
from secateurs.testing.toys import MLP, AttentionMLPBlock


def _roles(model, x):
    out: dict[str | None, set[str]] = {}
    for g in sc.analyze(model, x).groups:
        if g.kind == "channels":
            out.setdefault(channel_role(g), set()).update(m.fqn.rsplit(".", 1)[0] for m in g.members)
    return out


def test_attention_channels_are_not_ffn():
    torch.manual_seed(0)
    roles = _roles(AttentionMLPBlock().eval(), torch.randn(2, 5, 16))
    assert roles["ffn"] == {"fc1", "fc2"}
    assert {"q", "k"} <= roles[None] and not roles[None] & {"fc1", "fc2"}


def test_ffn_ratio_leaves_attention_channels_alone():
    torch.manual_seed(0)
    model, x = AttentionMLPBlock().eval(), torch.randn(2, 5, 16)
    report = sc.prune(model, x, ratio={"ffn": 0.5})
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.fc1.out_features == 16 and model.q.out_features == model.k.out_features == 16


def test_ratio_that_prunes_nothing_says_so():
    model, x = MLP().eval(), torch.randn(2, 6)
    with pytest.warns(NothingPrunedWarning, match=r"\{'heads': 0.5\} prunes nothing: the model has no prunable "
                                                  "attention heads"):
        sc.plan(model, x, ratio={"heads": 0.5, "ffn": 0.25})
    with pytest.warns(NothingPrunedWarning, match="rounds down to none"):
        sc.plan(model, x, ratio={"ffn": 0.1})  # 8 units: floor(0.8) = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", NothingPrunedWarning)
        sc.plan(model, x, ratio=0.5)  # a float ratio names no kind: no word about heads on an MLP


@pytest.mark.parametrize("model_type,not_ffn", [
    ("codegen", "attn.out_proj"),  # attention in blocks of heads (mp_num), seen through reshapes
    pytest.param("segformer", "attention.k_proj", marks=pytest.mark.slow),  # sequence reduction + LayerNorm
    pytest.param("deepseek_v3", "self_attn.q_a_layernorm", marks=pytest.mark.slow),  # MLA's normalised low rank
])
def test_hf_attention_widths_are_not_ffn(model_type, not_ffn):
    pytest.importorskip("transformers")
    from secateurs.testing.hf_tiny import build

    t = build(model_type)
    roles = _roles(t.model, t.inputs)
    assert roles.get("ffn") and all("mlp" in m or "dwconv" in m or "experts" in m for m in roles["ffn"])
    assert not any(not_ffn in m for m in roles["ffn"])


class _InterleavedGLU(torch.nn.Module):
    """GPT-OSS style: gate and up interleaved in one projection, read as x[..., ::2] and x[..., 1::2]."""

    def __init__(self):
        super().__init__()
        self.gate_up = torch.nn.Linear(8, 2 * 12)
        self.down = torch.nn.Linear(12, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gate_up(x)
        return x + self.down(torch.nn.functional.silu(h[..., ::2]) * h[..., 1::2])


def test_interleaved_gate_up_is_one_ffn_width():
    torch.manual_seed(0)
    model, x = _InterleavedGLU().eval(), torch.randn(2, 3, 8)
    (g,) = [g for g in sc.analyze(model, x).groups if channel_role(g) == "ffn"]
    gu = next(m for m in g.members if m.fqn == "gate_up.weight")
    assert sorted(g.member_indices(gu, [3])) == [6, 7]  # unit 3: row 3 of the gate (6) and of the up (7) piece
    report = sc.prune(model, x, ratio={"ffn": 0.5})
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.gate_up.out_features == 12 and model.down.in_features == 6


class _WideSpaceMLP(torch.nn.Module):
    """An MLP that works in a wider, normalised space projected from and back to the residual stream (MuSE-Spark's
    experts): ``x + back(norm(mlp(norm(into(x)))))``; the MLP's inner width is an FFN, the wide space is not."""

    def __init__(self):
        super().__init__()
        self.into, self.back = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
        self.norm_in, self.norm_out = torch.nn.LayerNorm(32), torch.nn.LayerNorm(32)
        self.up, self.down = torch.nn.Linear(32, 24), torch.nn.Linear(24, 32)

    def forward(self, x):
        h = self.norm_in(self.into(x))
        return x + self.back(self.norm_out(self.down(torch.relu(self.up(h)))))


def test_an_mlp_behind_more_projections_is_still_ffn():
    torch.manual_seed(0)
    roles = _roles(_WideSpaceMLP().eval(), torch.randn(2, 5, 16))
    assert roles["ffn"] == {"up", "down"}
    assert "into" not in roles["ffn"] and "back" not in roles["ffn"]


class _FeatureExtractorThenMLP(torch.nn.Module):
    """wav2vec2's shape: convolutions over the raw input, a normalised projection into the residual stream, then an
    MLP block; the convolutions' channels lead into the stream but branch off no stream: not FFN."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv1d(1, 12, 3), torch.nn.Conv1d(12, 12, 3)
        self.norm, self.proj = torch.nn.LayerNorm(12), torch.nn.Linear(12, 16)
        self.up, self.down = torch.nn.Linear(16, 24), torch.nn.Linear(24, 16)

    def forward(self, wave):
        h = torch.relu(self.conv2(torch.relu(self.conv1(wave)))).transpose(1, 2)
        x = self.proj(self.norm(h))
        return x + self.down(torch.relu(self.up(x)))


def test_a_feature_extractor_before_the_first_residual_stream_is_not_ffn():
    torch.manual_seed(0)
    roles = _roles(_FeatureExtractorThenMLP().eval(), torch.randn(2, 1, 20))
    assert roles["ffn"] == {"up", "down"}


class _FusedOneHeadAttention(torch.nn.Module):
    """Hiera's first stage: a fused q/k/v projection with one head (so no reshape into several heads breaks the
    width), attention, a projection back, then an MLP: only the MLP is FFN."""

    def __init__(self):
        super().__init__()
        self.norm, self.qkv, self.proj = torch.nn.LayerNorm(16), torch.nn.Linear(16, 48), torch.nn.Linear(16, 16)
        self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, n, 3, 1, 16).permute(2, 0, 3, 1, 4).unbind(0)
        y = (torch.softmax(q @ k.transpose(-1, -2) * 0.25, dim=-1) @ v).transpose(1, 2).reshape(b, n, 16)
        x = x + self.proj(y)
        return x + self.fc2(torch.relu(self.fc1(x)))


def test_a_fused_one_head_attention_is_not_ffn():
    torch.manual_seed(0)
    roles = _roles(_FusedOneHeadAttention().eval(), torch.randn(2, 5, 16))
    assert roles["ffn"] == {"fc1", "fc2"}
