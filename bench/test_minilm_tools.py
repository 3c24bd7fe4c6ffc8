"""Metrics of bench_minilm.py on toy embeddings (no model): PYTHONPATH=. python -m pytest bench/test_minilm_tools.py"""

import torch
import torch.nn.functional as F
from minilm_tools import fidelity, infonce


def test_fidelity_is_one_for_identical_and_drops_for_noise():
    e = F.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert fidelity(e, e) == {"cosine": 1.0, "top1": 1.0, "top5": 1.0}
    noisy = F.normalize(e + 0.5 * torch.randn(40, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    m = fidelity(e, noisy)
    assert 0.5 < m["cosine"] < 1.0 and m["top1"] < 1.0 and m["top5"] < 1.0


def test_infonce_prefers_matching_pairs():
    class Out:
        def __init__(self, h):
            self.last_hidden_state = h

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, 8, generator=g)
    mask = torch.ones(8, 3, dtype=torch.long)
    matched = infonce(Out(torch.cat([a, a])), {"attention_mask": mask})
    shuffled = infonce(Out(torch.cat([a, a.roll(1, 0)])), {"attention_mask": mask})
    assert matched < shuffled
