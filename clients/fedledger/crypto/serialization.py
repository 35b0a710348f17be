"""Compact bytes for packed encrypted vectors, and strict parsing of them.

Layout of version 1 (all integers big-endian)::

    magic "FLPV" | version u8 | key fingerprint 32 | value_bits u8 | slot_bits u8 | clip f64
    | max_summands u32 | max_weight u32 | length u32 | summands u32 | total_weight u64
    | count u32 | ciphertext_bytes u16 | count * ciphertext_bytes

The parser trusts nothing: every field is checked against the expected key and layout, the
length must match exactly, and every ciphertext must be a unit of ``Z_{n^2}`` (a non-unit would
also leak a factor of ``n``), so an artifact fetched from a store fails here, with the reason, and
not later as a wrong model.
"""

from __future__ import annotations

import struct

from gmpy2 import mpz

from fedledger.crypto.packing import Layout
from fedledger.crypto.paillier import PublicKey
from fedledger.crypto.vector import EncryptedVector
from fedledger.errors import EncodingError, MalformedCiphertextError

MAGIC = b"FLPV"
VERSION = 1
_HEADER = struct.Struct(">4sB32sBBdIIIIQIH")


def dump_vector(vector: EncryptedVector) -> bytes:
    """Serialize an encrypted vector (see the module docstring for the format)."""
    layout, key = vector.layout, vector.public_key
    width = key.ciphertext_bytes
    header = _HEADER.pack(
        MAGIC, VERSION, key.fingerprint, layout.value_bits, layout.slot_bits, layout.clip,
        layout.max_summands, layout.max_weight, vector.length, vector.summands,
        vector.total_weight, len(vector.ciphertexts), width,
    )
    return header + b"".join(int(c).to_bytes(width, "big") for c in vector.ciphertexts)


def load_vector(data: bytes, public_key: PublicKey, layout: Layout | None = None) -> EncryptedVector:
    """Parse bytes from :func:`dump_vector`, checking them against the key (and layout, if given).

    Raises
    ------
    MalformedCiphertextError
        With the first thing found wrong: truncation, magic, version, key, layout, counts, or a
        ciphertext out of range.
    """
    if len(data) < _HEADER.size:
        raise MalformedCiphertextError(f"{len(data)} bytes is shorter than the {_HEADER.size}-byte header")
    (magic, version, fingerprint, value_bits, slot_bits, clip, max_summands, max_weight,
     length, summands, total_weight, count, width) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedCiphertextError(f"not a packed Paillier vector (magic {magic!r})")
    if version != VERSION:
        raise MalformedCiphertextError(f"format version {version} is not supported (expected {VERSION})")
    if fingerprint != public_key.fingerprint:
        raise MalformedCiphertextError(
            f"encrypted under key {fingerprint[:8].hex()}, expected {public_key.fingerprint[:8].hex()}"
        )
    try:
        found = Layout(clip=clip, max_summands=max_summands, max_weight=max_weight, value_bits=value_bits)
    except EncodingError as err:
        raise MalformedCiphertextError(f"header declares an invalid layout: {err}") from err
    if found.slot_bits != slot_bits:
        raise MalformedCiphertextError(f"slot width {slot_bits} does not follow from the layout")
    if layout is not None and found != layout:
        raise MalformedCiphertextError(f"layout {found} differs from the task's layout {layout}")
    if width != public_key.ciphertext_bytes:
        raise MalformedCiphertextError(f"ciphertexts of {width} bytes, expected {public_key.ciphertext_bytes}")
    slots = found.slots(public_key.key_bits)
    if length == 0 or count != -(-length // slots):
        raise MalformedCiphertextError(f"{count} ciphertexts cannot hold {length} values at {slots} per ciphertext")
    if not 1 <= summands <= max_summands or not summands <= total_weight <= found.capacity:
        raise MalformedCiphertextError(
            f"{summands} summands of total weight {total_weight} are outside the layout's limits"
        )
    if len(data) != _HEADER.size + count * width:
        raise MalformedCiphertextError(
            f"body is {len(data) - _HEADER.size} bytes, expected {count} x {width} = {count * width}"
        )
    body = memoryview(data)[_HEADER.size:]
    ciphertexts = []
    for i in range(count):
        c = mpz(int.from_bytes(body[i * width:(i + 1) * width], "big"))
        if not public_key.is_unit(c):
            raise MalformedCiphertextError(f"ciphertext {i} is not an invertible element modulo n^2")
        ciphertexts.append(c)
    return EncryptedVector(public_key, found, length, tuple(ciphertexts), summands, total_weight)
