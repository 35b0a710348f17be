"""Compact bytes for packed encrypted vectors, and strict parsing of them.

Layout of version 2 (all integers big-endian; version 1 had byte-aligned slots)::

    magic "FLPV" | version u8 | key fingerprint 32 | value_bits u8 | slot_bits u8 | clip f64
    | max_summands u32 | max_weight u32 | length u32 | summands u32 | total_weight u64
    | count u32 | ciphertext_bytes u16 | count * ciphertext_bytes

The parser trusts nothing: every field is checked against the expected key and layout, the
length must match exactly, and every ciphertext must be a unit of ``Z_{n^2}`` (a non-unit would
also leak a factor of ``n``), so an artifact fetched from a store fails here, with the reason, and
not later as a wrong model.

Key custody's keys, shares and partial decryptions (threshold and escrow) are canonical JSON with
hex integers, each loader checking what it reads against the key it is for.
"""

from __future__ import annotations

import struct

from gmpy2 import mpz

from fedledger.crypto.escrow import FIELD_PRIME, EscrowRecord, EscrowShare
from fedledger.crypto.packing import Layout
from fedledger.crypto.paillier import PrivateKey, PublicKey
from fedledger.crypto.threshold import KeyShare, PartialDecryption, ThresholdPublicKey
from fedledger.crypto.vector import EncryptedVector
from fedledger.errors import EncodingError, KeyMismatchError, MalformedCiphertextError

MAGIC = b"FLPV"
VERSION = 2
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


# ---------------------------------------------------------------------------- threshold custody
# Keys, shares and partial decryptions travel between companies' processes and, for shares, into
# private data on the ledger. They use canonical JSON with hex integers: small next to a vector,
# and every field is re-validated on the way in.


def _hex(x: int | mpz) -> str:
    return format(int(x), "x")


def _int(raw: object, what: str) -> mpz:
    if not isinstance(raw, str) or not raw or any(c not in "0123456789abcdef" for c in raw):
        raise MalformedCiphertextError(f"{what} must be a lower-case hex integer")
    return mpz(int(raw, 16))


def _document(data: bytes, what: str) -> dict[str, object]:
    import json

    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise MalformedCiphertextError(f"{what} is not JSON: {err}") from None
    if not isinstance(document, dict):
        raise MalformedCiphertextError(f"{what} must be a JSON object")
    return document


def _canonical(document: dict[str, object]) -> bytes:
    import json

    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def dump_threshold_key(key: ThresholdPublicKey) -> bytes:
    """The threshold public key as canonical JSON (what a task's genesis refers to)."""
    return _canonical(key.to_dict())


def load_threshold_key(data: bytes) -> ThresholdPublicKey:
    """Parse :func:`dump_threshold_key` output."""
    document = _document(data, "threshold public key")
    try:
        paillier = document["paillier"]
        threshold, parties = document["threshold"], document["parties"]
        keys = document["verification_keys"]
        if not isinstance(paillier, dict) or not isinstance(keys, list):
            raise TypeError("paillier must be an object and verification_keys a list")
        if not isinstance(threshold, int) or not isinstance(parties, int):
            raise TypeError("threshold and parties must be integers")
        return ThresholdPublicKey(PublicKey.from_dict({str(k): str(v) for k, v in paillier.items()}),
                                  threshold, parties, _int(document["v"], "v"),
                                  tuple(_int(k, "verification key") for k in keys))
    except (KeyError, TypeError) as err:
        raise MalformedCiphertextError(f"threshold public key is malformed: {err}") from None


def dump_key_share(share: KeyShare) -> bytes:
    """A member's secret share, bound to its key's fingerprint. Secret: store it only privately."""
    return _canonical({"index": share.index, "secret": _hex(share.secret), "key": share.public.fingerprint.hex()})


def load_key_share(data: bytes, public: ThresholdPublicKey) -> KeyShare:
    """Parse :func:`dump_key_share` output, refusing a share of another key."""
    document = _document(data, "key share")
    if document.get("key") != public.fingerprint.hex():
        raise KeyMismatchError("the key share belongs to another threshold key")
    index = document.get("index")
    if not isinstance(index, int) or not 1 <= index <= public.parties:
        raise MalformedCiphertextError(f"key share index must be in 1..{public.parties}")
    return KeyShare(index, _int(document.get("secret"), "key share secret"), public)


def dump_partial(partial: PartialDecryption) -> bytes:
    """A member's partial decryption of one vector with its batched proof."""
    return _canonical({"index": partial.index, "values": [_hex(v) for v in partial.values],
                       "challenge": _hex(partial.challenge), "response": _hex(partial.response)})


def load_partial(data: bytes) -> PartialDecryption:
    """Parse :func:`dump_partial` output (its proof is checked by ``verify_partial``)."""
    document = _document(data, "partial decryption")
    index, values = document.get("index"), document.get("values")
    if not isinstance(index, int) or index < 1 or not isinstance(values, list):
        raise MalformedCiphertextError("partial decryption needs a positive index and a list of values")
    return PartialDecryption(index, tuple(_int(v, "partial value") for v in values),
                             _int(document.get("challenge"), "challenge"), _int(document.get("response"), "response"))


# ---------------------------------------------------------------------------- escrow custody
# The master's private key and each member's escrow share travel sealed to their holder
# (fedledger.crypto.sealing) through the ledger; the escrow record is their public side. The
# same canonical JSON with hex integers, parsed strictly: exactly the fields named, integers
# without leading zeros, so that a document read back is byte for byte the one dumped (a hash
# taken over it before sealing stays checkable).

_LOWER_HEX = frozenset("0123456789abcdef")


def _fields(document: dict[str, object], names: set[str], what: str) -> None:
    if set(document) != names:
        unknown, missing = sorted(set(document) - names), sorted(names - set(document))
        raise MalformedCiphertextError(f"{what} must have exactly the fields {', '.join(sorted(names))}"
                                       f" (unknown: {unknown}, missing: {missing})")


def _exact_int(raw: object, what: str) -> mpz:
    """A lower-case hex integer without leading zeros, as :func:`_hex` writes it."""
    value = _int(raw, what)
    if isinstance(raw, str) and raw != _hex(value):
        raise MalformedCiphertextError(f"{what} must be written without leading zeros")
    return value


def _count(raw: object, what: str) -> int:
    # bool is an int subclass: true is no index.
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise MalformedCiphertextError(f"{what} must be an integer")
    return raw


def dump_private_key(private_key: PrivateKey) -> bytes:
    """An escrow master's private key: the factors ``p`` and ``q`` of its modulus.

    Secret: seal it to the master (:func:`~fedledger.crypto.sealing.seal`); never store it in the clear.
    """
    return _canonical({"p": _hex(private_key.p), "q": _hex(private_key.q)})


def load_private_key(data: bytes, public_key: PublicKey) -> PrivateKey:
    """Parse :func:`dump_private_key` output as the private key of ``public_key``.

    Raises
    ------
    MalformedCiphertextError
        The bytes are not exactly a ``{"p", "q"}`` document of hex integers.
    KeyMismatchError
        The factors are not those of ``public_key``'s modulus: the private key of another key.
    """
    document = _document(data, "private key")
    _fields(document, {"p", "q"}, "private key")
    p, q = _exact_int(document["p"], "private key factor p"), _exact_int(document["q"], "private key factor q")
    if p < 2 or q < 2 or p == q or p * q != public_key.n:
        raise KeyMismatchError("the private key belongs to another public key: its factors do not multiply to this "
                               "key's modulus")
    return PrivateKey(public_key=public_key, p=p, q=q)


def dump_escrow_share(share: EscrowShare) -> bytes:
    """A member's escrow share, bound to its key's fingerprint. Secret: seal it to its holder."""
    return _canonical({"index": share.index, "value": _hex(share.value), "key_fingerprint": share.key_fingerprint.hex()})


def load_escrow_share(data: bytes, record: EscrowRecord) -> EscrowShare:
    """Parse :func:`dump_escrow_share` output as a share of ``record``'s escrow.

    The share is not checked against its commitment here: :func:`~fedledger.crypto.escrow.recover_private_key`
    does, naming the member whose share fails.

    Raises
    ------
    MalformedCiphertextError
        Not exactly an ``{"index", "value", "key_fingerprint"}`` document, an index outside
        ``1..record.parties``, or a value outside the sharing field.
    KeyMismatchError
        A share of another key's escrow.
    """
    document = _document(data, "escrow share")
    _fields(document, {"index", "value", "key_fingerprint"}, "escrow share")
    if document["key_fingerprint"] != record.key_fingerprint.hex():
        raise KeyMismatchError("the escrow share belongs to another key's escrow")
    index = _count(document["index"], "escrow share index")
    if not 1 <= index <= record.parties:
        raise MalformedCiphertextError(f"escrow share index must be in 1..{record.parties}, got {index}")
    value = _exact_int(document["value"], "escrow share value")
    if value >= FIELD_PRIME:
        raise MalformedCiphertextError("escrow share value is outside the sharing field")
    return EscrowShare(index, value, record.key_fingerprint)


def dump_escrow_record(record: EscrowRecord) -> bytes:
    """The public side of an escrow: its key's fingerprint, threshold, party count and commitments."""
    return _canonical({"key_fingerprint": record.key_fingerprint.hex(), "threshold": record.threshold,
                       "parties": record.parties, "commitments": list(record.commitments)})


def load_escrow_record(data: bytes, public_key: PublicKey) -> EscrowRecord:
    """Parse :func:`dump_escrow_record` output as the escrow of ``public_key``.

    Raises
    ------
    MalformedCiphertextError
        Not exactly a ``{"key_fingerprint", "threshold", "parties", "commitments"}`` document, a
        threshold outside ``2..parties``, or other than one SHA-256 hex commitment per party.
    KeyMismatchError
        The escrow of another key.
    """
    document = _document(data, "escrow record")
    _fields(document, {"key_fingerprint", "threshold", "parties", "commitments"}, "escrow record")
    if document["key_fingerprint"] != public_key.fingerprint.hex():
        raise KeyMismatchError("the escrow record belongs to another public key")
    threshold = _count(document["threshold"], "escrow threshold")
    parties = _count(document["parties"], "escrow party count")
    if not 2 <= threshold <= parties:
        raise MalformedCiphertextError(f"escrow threshold must be in 2..parties, got {threshold} of {parties}")
    commitments = document["commitments"]
    if not isinstance(commitments, list) or len(commitments) != parties or not all(
            isinstance(c, str) and len(c) == 64 and set(c) <= _LOWER_HEX for c in commitments):
        raise MalformedCiphertextError(f"escrow commitments must be {parties} SHA-256 digests in lower-case hex")
    return EscrowRecord(public_key.fingerprint, threshold, parties, tuple(commitments))
