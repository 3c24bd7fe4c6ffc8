import hashlib

import pytest

from secateurs.errors import InvalidArgumentError
from secateurs.testing.sentences import load_sentences


def test_sentence_splits_are_sized_disjoint_and_follow_the_hash_rule():
    train, held = load_sentences("train"), load_sentences("heldout")
    assert len(train) == 4581 and len(held) == 913
    assert len(set(train)) == len(train) and len(set(held)) == len(held)
    assert not set(train) & set(held)
    assert all(int(hashlib.sha1(s.encode()).hexdigest(), 16) % 6 == 0 for s in held)
    assert all(int(hashlib.sha1(s.encode()).hexdigest(), 16) % 6 != 0 for s in train[:500])
    assert all(6 <= len(s.split()) <= 40 and s[0].isupper() and s.endswith(".") for s in train + held)


def test_unknown_split_is_refused():
    with pytest.raises(InvalidArgumentError, match="split must be one of"):
        load_sentences("test")  # type: ignore[arg-type]
