"""gem.tokenizer: byte-level round trip, specials, padding."""

from __future__ import annotations

import numpy as np
import pytest

from gem.tokenizer import BOS_ID, EOS_ID, PAD_ID, ByteTokenizer, encode, encode_batch


@pytest.mark.parametrize(
    "text",
    ["hello world", "Straße, café, niño", "今日は天気がいい", "Сегодня", "오늘은 🙂", ""],
)
def test_round_trip_utf8(text: str) -> None:
    ids = encode(text)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert len(ids) == len(text.encode("utf-8")) + 2
    assert all(0 <= i < ByteTokenizer.vocab_size for i in ids)
    assert ByteTokenizer().decode(ids) == text


def test_truncation_keeps_bos_drops_eos() -> None:
    ids = encode("abcdefgh", max_len=4)
    assert ids == [BOS_ID, ord("a"), ord("b"), ord("c")]
    with pytest.raises(ValueError):
        encode("x", max_len=0)


def test_truncated_multibyte_decodes_with_replacement() -> None:
    ids = encode("é", max_len=2)  # <bos> + first byte of a 2-byte character
    assert ByteTokenizer().decode(ids) == "\ufffd"


def test_encode_batch_pads_right_with_mask() -> None:
    ids, mask = encode_batch(["a", "abcd"], max_len=16)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.shape == (2, 6)
    assert ids[0].tolist() == [BOS_ID, ord("a"), EOS_ID, PAD_ID, PAD_ID, PAD_ID]
    assert mask[0].tolist() == [1, 1, 1, 0, 0, 0] and mask[1].sum() == 6
    ids, _ = encode_batch(["a"], max_len=16, pad_to=10)
    assert ids.shape == (1, 10)
    with pytest.raises(ValueError, match="pad_to"):
        encode_batch(["abcdef"], max_len=16, pad_to=3)
