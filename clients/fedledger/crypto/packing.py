"""Fixed-point quantization and slot packing of float vectors into Paillier plaintexts.

The approach of FATE's packer and BatchCrypt: each value in ``[-clip, clip]`` becomes an unsigned
integer of ``value_bits`` bits (offset by ``clip``, so no sign bit; stochastic rounding, so the
quantization is unbiased), and many such integers sit side by side in one plaintext, each in a
slot exactly wide enough that a homomorphic sum of up to ``max_summands`` vectors, each weighted
by at most ``max_weight``, never carries into the next slot. Slots are bit-aligned, not rounded up
to whole bytes: with record-level DP (weight 1) and 10 companies a slot is 20 bits, 102 to a
2048-bit plaintext instead of 85. Decoding a weighted sum subtracts ``clip * total_weight`` once,
which is why the total weight travels with every ciphertext.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from gmpy2 import mpz

from fedledger.errors import CryptoError, EncodingError

# Slot sums are turned back into float64; above 53 bits that conversion would round.
_MAX_SLOT_BITS = 53


@dataclass(frozen=True)
class Layout:
    """How a vector is quantized and packed; fixed per task so every update sums with the others.

    Parameters
    ----------
    clip
        Values must lie in ``[-clip, clip]`` (for DP updates: the clip norm plus noise margin).
    max_summands
        The most updates that will ever be summed into one aggregate.
    max_weight
        The largest integer weight of one update in a weighted sum (FedAvg's ``n_k``, rescaled).
    value_bits
        Quantization bits per value; the step is ``2 * clip / (2**value_bits - 1)``.
    """

    clip: float
    max_summands: int
    max_weight: int = 1
    value_bits: int = 16

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise EncodingError(f"clip must be a positive finite number, got {self.clip!r}")
        if not 2 <= self.value_bits <= 32:
            raise EncodingError(f"value_bits must be in [2, 32], got {self.value_bits}")
        if self.max_summands < 1 or self.max_weight < 1:
            raise EncodingError("max_summands and max_weight must be at least 1")
        needed = self.value_bits + self.capacity.bit_length()
        if needed > _MAX_SLOT_BITS:
            raise EncodingError(
                f"value_bits + headroom = {needed} bits exceeds {_MAX_SLOT_BITS}: "
                "lower value_bits, max_summands or max_weight"
            )

    @property
    def capacity(self) -> int:
        """The largest total weight a sum may carry: ``max_summands * max_weight``."""
        return self.max_summands * self.max_weight

    @property
    def slot_bits(self) -> int:
        """Bits per slot: the value plus exactly the headroom ``capacity`` needs.

        A sum of weight ``W <= capacity`` is at most ``W * (2**value_bits - 1)``, which is below
        ``2**(value_bits + capacity.bit_length())``: no sum within capacity carries out of its slot.
        """
        return self.value_bits + self.capacity.bit_length()

    @property
    def scale(self) -> float:
        """Quantized units per unit of value."""
        return float((1 << self.value_bits) - 1) / (2.0 * self.clip)

    def slots(self, key_bits: int) -> int:
        """Slots per plaintext for a key of ``key_bits`` bits (the packed integer stays below n)."""
        return (key_bits - 1) // self.slot_bits

    def error_bound(self, total_weight: int) -> float:
        """Largest possible absolute error of one coordinate of a decoded weighted sum.

        Each value is off by less than one quantization step after stochastic rounding, so a sum
        of total weight ``W`` is off by less than ``W`` steps.
        """
        return total_weight / self.scale

    def quantize(self, values: npt.ArrayLike, rng: np.random.Generator) -> npt.NDArray[np.uint64]:
        """Map values in ``[-clip, clip]`` to unsigned integers by unbiased stochastic rounding."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1:
            raise EncodingError(f"expected a 1-D vector, got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise EncodingError(f"{int(np.count_nonzero(~np.isfinite(v)))} values are NaN or infinite")
        outside = np.abs(v) > self.clip
        if outside.any():
            raise EncodingError(
                f"{int(outside.sum())} values lie outside [-{self.clip}, {self.clip}] "
                f"(largest magnitude {float(np.abs(v).max()):.6g}); clip the update first"
            )
        top = float((1 << self.value_bits) - 1)
        x = (v + self.clip) * self.scale
        q = np.floor(x + rng.random(v.shape))
        return np.clip(q, 0.0, top).astype(np.uint64)

    def dequantize(self, sums: npt.NDArray[np.uint64], total_weight: int) -> npt.NDArray[np.float64]:
        """Turn slot sums of total weight ``total_weight`` back into the weighted sum of values."""
        return sums.astype(np.float64) / self.scale - self.clip * total_weight

    def _row_bytes(self, key_bits: int) -> int:
        return -(-(self.slots(key_bits) * self.slot_bits) // 8)

    def pack(self, quantized: npt.NDArray[np.uint64], key_bits: int) -> list[mpz]:
        """Pack slot integers into plaintexts, value ``i`` in slot ``i % slots`` (lowest bits first)."""
        slots, width = self.slots(key_bits), self.slot_bits
        count = -(-len(quantized) // slots)
        padded = np.zeros(count * slots, dtype="<u8")
        padded[: len(quantized)] = quantized
        # Each value's lowest ``width`` bits, little-endian, laid end to end along its plaintext.
        low_bytes = padded.view(np.uint8).reshape(-1, 8)[:, : -(-width // 8)]
        bits = np.unpackbits(low_bytes, axis=1, bitorder="little")[:, :width]
        rows = np.packbits(bits.reshape(count, slots * width), axis=1, bitorder="little")
        return [mpz(int.from_bytes(row.tobytes(), "little")) for row in rows]

    def unpack(self, plaintexts: list[mpz], key_bits: int, length: int) -> npt.NDArray[np.uint64]:
        """Inverse of :meth:`pack`: split plaintexts back into ``length`` slot integers."""
        slots, width = self.slots(key_bits), self.slot_bits
        used = slots * width
        if any(m < 0 or m.bit_length() > used for m in plaintexts):
            raise CryptoError(
                "a decrypted plaintext overflows its slots: wrong key, or a corrupted aggregate"
            )
        row_bytes = self._row_bytes(key_bits)
        raw = np.frombuffer(b"".join(int(m).to_bytes(row_bytes, "little") for m in plaintexts), dtype=np.uint8)
        bits = np.unpackbits(raw.reshape(-1, row_bytes), axis=1, bitorder="little")[:, :used].reshape(-1, width)
        wide = np.zeros((bits.shape[0], 8), dtype=np.uint8)
        wide[:, : -(-width // 8)] = np.packbits(bits, axis=1, bitorder="little")
        return wide.view("<u8").reshape(-1)[:length].astype(np.uint64)
