"""The host's adbkey.pub format and the AUTH signature check.

adbkey.pub is base64 of Android's RSAPublicKey struct (u32 modulus words,
u32 n0inv, modulus and rr as 256 little-endian bytes, u32 exponent) followed
by " user@host". adbd verifies the AUTH token with RSA PKCS#1 v1.5 where the
20-byte token is treated as an already computed SHA-1 digest; so does the peer.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

ANDROID_PUBKEY_STRUCT = struct.Struct("<LL256s256sL")
MODULUS_WORDS = 64


def parse_android_pubkey(text: bytes | str) -> rsa.RSAPublicKey:
    """Decode one adbkey.pub line (base64 blob, optional comment)."""
    if isinstance(text, str):
        text = text.encode()
    blob = base64.b64decode(text.strip().split(b"\0")[0].split()[0])
    if len(blob) != ANDROID_PUBKEY_STRUCT.size:
        raise ValueError(f"adb public key is {len(blob)} bytes, expected "
                         f"{ANDROID_PUBKEY_STRUCT.size}")
    words, _n0inv, modulus, _rr, exponent = ANDROID_PUBKEY_STRUCT.unpack(blob)
    if words != MODULUS_WORDS:
        raise ValueError(f"adb public key has {words} modulus words, expected {MODULUS_WORDS}")
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "little")).public_key()


def load_pubkey_file(path: Path) -> rsa.RSAPublicKey:
    return parse_android_pubkey(Path(path).read_bytes())


def signature_ok(key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, token, padding.PKCS1v15(), Prehashed(hashes.SHA1()))  # noqa: S303
    except (InvalidSignature, ValueError):
        return False
    return True


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()
