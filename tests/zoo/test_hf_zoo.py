"""transformers model types from the library's own registry: prune heads+FFN with defaults, verify, stock reload.

The default run checks a sample (decoders with and without GQA, encoders, an encoder-decoder, a vision model, a
mixture of experts); ``-m slow`` runs every model type of ``MODEL_MAPPING`` and checks what must hold for all of
them: no bug (every failure is a refusal with a reason), and no silent mismatch (when the plan-time check says a
stock config describes the pruned model, ``save_pretrained`` -> ``from_pretrained`` gives the same outputs).
``bench/hf_zoo_table.py`` writes the per-type table in docs/zoo.md.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from secateurs.testing.hf_tiny import model_types  # noqa: E402
from secateurs.testing.hf_zoo import TypeResult, check_type  # noqa: E402

#: the sample: model type -> whether the heads+FFN request removes heads. Configs that derive the head size
#: (head_dim = hidden_size // num_attention_heads) can write no other head count while the hidden size is kept,
#: so their heads stay (a count constraint says so) and only the FFN is pruned; every type reloads the same.
SAMPLE = {
    "llama": True, "mistral": True, "vit": True, "mixtral": True,
    "bert": False, "gpt2": False, "bart": False,
}


def _check_invariants(r: TypeResult) -> None:
    for a in r.attempts:
        assert a.status != "error", f"{r.model_type} {a.ratio}: {a.reason}"
        if a.status in ("exact", "partial", "structural") and not a.stock_config:
            assert a.reload == "same", f"{r.model_type} {a.ratio}: config said expressible, reload {a.reload}: " \
                                       f"{a.reload_reason or a.reload_error}"


@pytest.mark.parametrize("model_type", sorted(SAMPLE))
def test_sample(model_type):
    r = check_type(model_type)
    assert r.built, r.skip_reason
    _check_invariants(r)
    first = r.attempts[0]
    assert first.status == "exact" and first.removed.get("channels")
    assert bool(first.removed.get("heads")) == SAMPLE[model_type]
    assert first.reload == "same" and not first.stock_config
    if r.moe:
        assert [a.ok for a in r.attempts[1:]] == [True, True]
        assert r.attempts[2].removed == {"experts": 2}


@pytest.mark.slow
@pytest.mark.parametrize("model_type", model_types())
def test_every_model_type(model_type):
    r = check_type(model_type)
    if not r.built:
        pytest.skip(f"cannot build or run from a tiny config: {r.skip_reason}")
    _check_invariants(r)
