"""Coupling behaviour that matters to users: what is grouped, what is frozen, and why."""

import pytest
import torch
from torch import nn

import secateurs as sc


@torch.library.custom_op("secateurs_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class WithMystery(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.inner = nn.Sequential(nn.Linear(16, 16))
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.fc2(mystery(self.inner(h)))


def test_unknown_op_freezes_what_it_touches_and_says_where():
    model = WithMystery().eval()
    a = sc.analyze(model, torch.randn(2, 8))
    text = a.summary()
    assert "secateurs_test.mystery" in text and "no coupling rule" in text
    assert "'inner.0'" in text or "inner" in text
    # fc1 -> inner.0 channels are still prunable; inner.0 -> fc2 (through the unknown op) is not
    names = {g.name for g in a.groups}
    assert any(n.startswith("fc1.") for n in names)
    assert not any(m.fqn == "fc2.weight" and m.dim == 1 for g in a.groups for m in g.members)
    report = sc.prune(model, torch.randn(2, 8), ratio=0.5)
    assert report.verification.ok
    assert model.fc1.out_features == 8 and model.inner[0].out_features == 16


class Shuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 1)
        self.b = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.b(y)


def test_channel_shuffle_is_pruned_consistently():
    model = Shuffle().eval()
    x = torch.randn(1, 4, 5, 5)
    a = sc.analyze(model, x)
    shuffle_groups = [g for g in a.groups if any(m.fqn == "a.weight" and m.dim == 0 for m in g.members)]
    assert shuffle_groups, a.summary()
    report = sc.prune(model, x, ratio=0.5)
    assert report.verification.ok and report.verification.mode == "exact"
    assert model.a.out_channels < 8 and model.b.in_channels == model.a.out_channels


def test_gqa_llama_on_meta_device_finds_kv_groups_and_query_heads():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                   num_attention_heads=8, num_key_value_heads=2)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    ids = torch.zeros(1, 6, dtype=torch.long, device="meta")
    a = sc.analyze(model, {"input_ids": ids, "use_cache": False})
    kinds = {g.kind: g for g in a.groups}
    heads, per_group = kinds["heads"], kinds["query_heads"]
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    assert heads.n_units == 2  # whole KV groups
    q = next(m for m in heads.members if m.fqn.endswith("q_proj.weight"))
    # a KV group removes its 4 query heads from q_proj
    assert len(heads.member_indices(q, [0])) == 4 * head_dim
    assert per_group.n_units == 4  # query heads per KV group
    assert not any("inv_freq" in g.name for g in a.groups)


def test_rope_rotate_half_pairs_dimensions():
    class Rope(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(8, 8)
            self.o = nn.Linear(8, 8)

        def forward(self, x, cos, sin):
            q = self.q(x)
            half = q.shape[-1] // 2
            rot = torch.cat([-q[..., half:], q[..., :half]], dim=-1)
            return self.o(q * cos + rot * sin)

    x, cos, sin = torch.randn(1, 3, 8), torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    a = sc.analyze(Rope().eval(), (x, cos, sin))
    # cos/sin are model inputs, so nothing in q's width may change; but within the graph the
    # pairing is visible: q's width atoms are (j, j + 4) pairs
    st = a.structure
    q_space = a.coupled.param_spaces()["q.weight"][0]
    c = int(st.space_class[q_space])
    atoms = st.atom[st.class_offset[c] : st.class_offset[c] + 8]
    assert all(atoms[j] == atoms[j + 4] for j in range(4))
    assert len(set(atoms.tolist())) == 4


class TiedLoss(nn.Module):
    """Tied embedding / LM head whose logits are consumed inside forward (so vocab is not an output)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 16)
        self.mid = nn.Linear(16, 32)
        self.mid2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 20, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        h = self.emb(ids)
        h = h + self.mid2(torch.relu(self.mid(h)))
        return torch.logsumexp(self.head(h), dim=-1)


def test_tied_weights_are_pruned_as_one_tensor():
    model = TiedLoss().eval()
    ids = torch.randint(0, 20, (2, 5))
    a = sc.analyze(model, ids)
    # the vocabulary is frozen through the embedding, so the tied head cannot lose vocab rows
    assert not any(m.fqn == "head.weight" and m.dim == 0 for g in a.groups for m in g.members)
    hidden = [g for g in a.groups if any(m.fqn == "emb.weight" and m.dim == 1 for m in g.members)]
    assert len(hidden) == 1 and any(m.fqn == "head.weight" and m.dim == 1 for m in hidden[0].members)
    report = sc.prune(model, ids, ratio=0.5)
    assert report.verification.ok
    assert model.head.weight is model.emb.weight and model.emb.weight.shape == (20, 8)
