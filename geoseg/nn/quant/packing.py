"""Bit packing of unsigned integer codes: 8/b codes of ``b`` bits per byte (b in 1, 2, 4, 8).

Codes are packed little-end first: code ``i`` of a byte occupies bits ``b·i … b·i + b − 1``.
The last byte is padded with zero codes; the number of codes is stored beside the bytes by
the caller (:mod:`geoseg.nn.quant.qmodelfile`), so any length round-trips exactly.
"""

from __future__ import annotations

import numpy as np

from geoseg.errors import ModelFileError

__all__ = ["PACKABLE_BITS", "pack_codes", "packed_size", "unpack_codes"]

#: Bit widths that divide a byte and can be packed without straddling bytes.
PACKABLE_BITS = (1, 2, 4, 8)


def _check_bits(bits: int) -> int:
    if bits not in PACKABLE_BITS:
        raise ValueError(f"cannot pack {bits}-bit codes (packable widths: {PACKABLE_BITS})")
    return bits


def packed_size(n: int, bits: int) -> int:
    """Bytes needed for ``n`` codes of ``bits`` bits."""
    per = 8 // _check_bits(bits)
    return -(-n // per)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned codes (any shape, flattened in C order) into a uint8 array.

    Parameters
    ----------
    codes : numpy.ndarray
        Non-negative integers below ``2**bits``.
    bits : int
        Code width: 1, 2, 4 or 8.

    Returns
    -------
    numpy.ndarray
        ``packed_size(codes.size, bits)`` bytes.

    Raises
    ------
    ValueError
        A code outside ``[0, 2**bits)`` or an unpackable width.
    """
    per = 8 // _check_bits(bits)
    flat = np.asarray(codes).reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"codes must lie in [0, {1 << bits}) for {bits}-bit packing (got {flat.min()}..{flat.max()})")
    padded = np.zeros(packed_size(flat.size, bits) * per, np.uint8)
    padded[: flat.size] = flat
    lanes = padded.reshape(-1, per).astype(np.uint16)
    shifts = (np.arange(per, dtype=np.uint16) * bits)[None, :]
    return (lanes << shifts).sum(axis=1).astype(np.uint8)


def unpack_codes(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Unpack ``n`` codes of ``bits`` bits from :func:`pack_codes` output (uint8, flat).

    Raises
    ------
    ModelFileError
        ``packed`` is too short for ``n`` codes (a damaged file).
    """
    per = 8 // _check_bits(bits)
    raw = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if raw.size != packed_size(n, bits):
        raise ModelFileError(f"packed weights hold {raw.size} bytes, {n} codes of {bits} bits need {packed_size(n, bits)}")
    shifts = (np.arange(per, dtype=np.uint8) * bits)[None, :]
    mask = np.uint8((1 << bits) - 1)
    return ((raw[:, None] >> shifts) & mask).reshape(-1)[:n]
