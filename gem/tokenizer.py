"""Byte-level tokenizer: UTF-8 bytes plus four special tokens.

Why bytes: no vocabulary file to download or version, every language and
script is covered (the multilingual domain needs that), and the on-device
agent can build valid inputs knowing only ``vocab_size`` and ``pad_id``.

Ids 0..255 are the byte values; then ``<pad>`` (256), ``<bos>`` (257),
``<eos>`` (258), ``<cls>`` (259). A sequence is ``<bos> bytes... <eos>`` and is
right-padded with ``<pad>``. The model is causal, so with right padding the
real tokens never see the pads and outputs do not depend on padding length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gem.config import NUM_BYTES, SPECIAL_TOKENS, VOCAB_SIZE

PAD_ID = NUM_BYTES + SPECIAL_TOKENS.index("<pad>")
BOS_ID = NUM_BYTES + SPECIAL_TOKENS.index("<bos>")
EOS_ID = NUM_BYTES + SPECIAL_TOKENS.index("<eos>")
CLS_ID = NUM_BYTES + SPECIAL_TOKENS.index("<cls>")


class ByteTokenizer:
    """Encode text to byte ids and back; stateless, so one shared instance suffices."""

    vocab_size: int = VOCAB_SIZE
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    cls_id: int = CLS_ID

    def encode(self, text: str, max_len: int | None = None, add_special: bool = True) -> list[int]:
        """Token ids of ``text`` (no padding).

        With ``max_len`` the result is truncated to at most ``max_len`` ids;
        truncation drops the tail bytes and the ``<eos>`` (so a truncated
        sequence is recognisable) but keeps ``<bos>``.
        """
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        ids = list(text.encode("utf-8"))
        if add_special:
            ids = [BOS_ID, *ids, EOS_ID]
        if max_len is not None and len(ids) > max_len:
            ids = ids[:max_len]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special tokens are dropped, broken UTF-8 is replaced
        (a truncation can cut a multi-byte character)."""
        data = bytes(int(i) for i in ids if 0 <= int(i) < NUM_BYTES)
        return data.decode("utf-8", errors="replace")

    def encode_batch(
        self, texts: Sequence[str], max_len: int, pad_to: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encode and right-pad a batch.

        Returns ``(input_ids, attention_mask)``, both int64 ``[batch, seq]``,
        where seq = ``pad_to`` if given, else the longest encoded text (so a
        batch of short texts stays short, which is what makes inference fast).
        """
        encoded = [self.encode(t, max_len=max_len) for t in texts]
        seq = pad_to if pad_to is not None else max((len(e) for e in encoded), default=1)
        if any(len(e) > seq for e in encoded):
            raise ValueError(f"pad_to={seq} is shorter than an encoded text; raise pad_to")
        ids = np.full((len(encoded), seq), PAD_ID, dtype=np.int64)
        mask = np.zeros((len(encoded), seq), dtype=np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = e
            mask[row, : len(e)] = 1
        return ids, mask


def encode(text: str, max_len: int | None = None) -> list[int]:
    """Module-level shortcut for ``ByteTokenizer().encode``."""
    return ByteTokenizer().encode(text, max_len=max_len)


def encode_batch(
    texts: Sequence[str], max_len: int, pad_to: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Module-level shortcut for ``ByteTokenizer().encode_batch``."""
    return ByteTokenizer().encode_batch(texts, max_len=max_len, pad_to=pad_to)
