import pytest
import torch

from secateurs.errors import InvalidArgumentError
from secateurs.io.calibration_sources import SYNTHETIC_WARNING, calibration_source
from secateurs.io.inputs import InputSpec

IMG = InputSpec(shape=(2, 3, 8, 8))
TXT = InputSpec(seq_len=4, vocab_size=300)


def _images(root, n, size=(20, 10), mode="RGB"):
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new(mode, size, color=(40 * i, 100, 200) if mode == "RGB" else 30 * i).save(root / f"img{i}.png")
    return root


def test_image_folder_is_resized_normalised_and_batched(tmp_path):
    root = _images(tmp_path / "imgs", 5)
    (root / "notes.txt").write_text("not an image")
    src = calibration_source(str(root), IMG, max_batches=2)
    assert src.kind == "images" and [tuple(b.shape) for b in src.batches] == [(2, 3, 8, 8), (2, 3, 8, 8)]
    # image 0 is the solid colour (0, 100, 200): imagenet-normalised per channel
    expected = (torch.tensor([0, 100, 200]) / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(src.batches[0][0, :, 4, 4], expected, atol=1e-5)
    raw = calibration_source(str(root), IMG, max_batches=8, normalize="none")
    assert len(raw.batches) == 3 and raw.batches[-1].shape[0] == 1  # 5 images in batches of 2
    assert torch.allclose(raw.batches[0][0, :, 0, 0], torch.tensor([0, 100, 200]) / 255)


def test_grayscale_input_converts_images(tmp_path):
    root = _images(tmp_path / "g", 2)
    src = calibration_source(str(root), InputSpec(shape=(1, 1, 4, 4)))
    assert [tuple(b.shape) for b in src.batches] == [(1, 1, 4, 4)] * 2


@pytest.mark.parametrize("setup,spec,match", [
    ("empty_dir", IMG, "holds no images"),
    ("bad_image", IMG, "cannot be read"),
    ("images", TXT, "need an image input"),
    ("missing", IMG, "does not exist"),
    ("csv", IMG, "is a .csv file"),
    ("text", IMG, "needs a text model input"),
    ("empty_text", TXT, "is empty"),
])
def test_bad_sources(tmp_path, setup, spec, match):
    path = tmp_path / "src"
    if setup == "empty_dir":
        path.mkdir()
    elif setup == "bad_image":
        path.mkdir()
        (path / "broken.png").write_bytes(b"not a png")
    elif setup == "images":
        _images(path, 1)
    elif setup == "csv":
        path = tmp_path / "x.csv"
        path.write_text("1,2")
    elif setup in ("text", "empty_text"):
        path = tmp_path / "t.txt"
        path.write_text("hello" if setup == "text" else "  \n")
    with pytest.raises(InvalidArgumentError, match=match):
        calibration_source(str(path), spec)


def test_text_byte_level_fallback_with_a_note(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 3)
    with pytest.warns(UserWarning, match="byte-level fallback"):
        src = calibration_source(str(path), TXT, max_batches=5)
    assert src.kind == "text" and len(src.batches) == 5
    assert src.batches[0]["input_ids"].tolist() == [[97, 98, 99, 100]]
    assert any("byte-level" in n for n in src.notes)
    small = InputSpec(seq_len=4, vocab_size=50)
    with pytest.warns(UserWarning, match="modulo 50"):
        ids = calibration_source(str(path), small, max_batches=1).batches[0]["input_ids"]
    assert ids.tolist() == [[97 % 50, 98 % 50, 99 % 50, 100 % 50]]


def test_short_text_is_repeated_to_fill_one_batch(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab")
    with pytest.warns(UserWarning):
        src = calibration_source(str(path), TXT)
    assert src.batches[0]["input_ids"].tolist() == [[97, 98, 97, 98]] and any("repeated" in n for n in src.notes)


def test_text_with_the_models_tokenizer(tmp_path):
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "the": 1, "cat": 2, "sat": 3, "on": 4, "mat": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "model")
    path = tmp_path / "t.txt"
    path.write_text("the cat sat on the mat " * 4)
    src = calibration_source(str(path), InputSpec(seq_len=3, vocab_size=6), tokenizer_dir=tmp_path / "model")
    assert src.batches[0]["input_ids"].tolist() == [[1, 2, 3]] and len(src.batches) == 8 and not src.notes
    with pytest.raises(InvalidArgumentError, match="beyond the model's vocab_size"):
        calibration_source(str(path), InputSpec(seq_len=3, vocab_size=4), tokenizer_dir=tmp_path / "model")


def test_synthetic_warns_honestly():
    with pytest.warns(UserWarning, match="random noise"):
        src = calibration_source("synthetic", IMG, max_batches=3)
    assert src.kind == "synthetic" and len(src.batches) == 3 and src.notes == [SYNTHETIC_WARNING]
    assert not torch.equal(src.batches[0], src.batches[1])
    with pytest.raises(InvalidArgumentError, match="at least 1 batch"):
        calibration_source("synthetic", IMG, max_batches=0)
