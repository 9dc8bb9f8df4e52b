"""An independent check of the Cloud Optimized GeoTIFF (COG) layout, read from the TIFF structure.

:func:`cog_problems` parses the TIFF or BigTIFF header and IFD chain with :mod:`struct` (it does
not use GDAL) and reports, in words, every way the file departs from the COG layout that GDAL's
``validate_cloud_optimized_geotiff.py`` and ``rio cogeo validate`` check:

* the file is a TIFF or BigTIFF;
* the first IFD is the full-resolution image, and it is tiled (so are overviews and masks);
* an image larger than 512 px on a side has internal overviews (reduced-resolution IFDs);
* overviews go from largest to smallest, and their IFDs follow the main image's in the file;
* every IFD, with the tag values it points to, lies before the first byte of tile data;
* tile data of the smallest overview comes first and the full-resolution image's last (a mask's
  tiles count with the image of the same size: GDAL interleaves them);
* within each IFD the tile offsets increase in storage order (row-major, band after band when
  planar), empty tiles (offset 0) aside; tile data lies inside the file.

Two checks are stricter than GDAL's script, as the COG definition asks: a missing overview set is
a problem (GDAL's script only warns), and the full-resolution image must be tiled whatever its
size (GDAL's script accepts strips up to 512 px).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = ["cog_problems"]

# TIFF tags used here
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
STRIP_OFFSETS = 273
SAMPLES_PER_PIXEL = 277
STRIP_BYTE_COUNTS = 279
PLANAR_CONFIGURATION = 284
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325

# NewSubfileType bits
REDUCED_RESOLUTION = 1
TRANSPARENCY_MASK = 4

# field type -> (struct code, size in bytes); codes only for the integer types read here
_TYPES: dict[int, tuple[str, int]] = {
    1: ("B", 1), 2: ("", 1), 3: ("H", 2), 4: ("I", 4), 5: ("", 8), 6: ("b", 1), 7: ("", 1),
    8: ("h", 2), 9: ("i", 4), 10: ("", 8), 11: ("", 4), 12: ("", 8), 13: ("I", 4),
    16: ("Q", 8), 17: ("q", 8), 18: ("Q", 8),
}
_INTEGER_TAGS = {
    NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH, STRIP_OFFSETS, SAMPLES_PER_PIXEL,
    STRIP_BYTE_COUNTS, PLANAR_CONFIGURATION, TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS,
}
_MAX_IFDS = 10_000


class _TiffError(Exception):
    """The TIFF structure cannot be read; the message says why."""


@dataclass
class _Ifd:
    """What this module needs of one IFD."""

    number: int  # position in the IFD chain, from 0
    offset: int  # where the IFD starts
    end: int  # byte after the IFD and every tag value it points to
    values: dict[int, list[int]] = field(default_factory=dict)
    role: str = ""  # "main", "overview" or "mask"
    level: int = -1  # 0 for the full-resolution image, k for the k-th overview (masks: of that image)
    label: str = ""

    def first(self, tag: int, default: int = 0) -> int:
        values = self.values.get(tag)
        return values[0] if values else default

    @property
    def width(self) -> int:
        return self.first(IMAGE_WIDTH)

    @property
    def height(self) -> int:
        return self.first(IMAGE_LENGTH)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def subfile_type(self) -> int:
        return self.first(NEW_SUBFILE_TYPE)

    @property
    def tiled(self) -> bool:
        return TILE_WIDTH in self.values and TILE_LENGTH in self.values and TILE_OFFSETS in self.values

    @property
    def offsets(self) -> list[int]:
        return self.values.get(TILE_OFFSETS if self.tiled else STRIP_OFFSETS, [])

    @property
    def byte_counts(self) -> list[int]:
        return self.values.get(TILE_BYTE_COUNTS if self.tiled else STRIP_BYTE_COUNTS, [])

    def data_starts(self) -> list[int]:
        """Offsets of the non-empty blocks (tiles or strips)."""
        counts = self.byte_counts
        return [o for i, o in enumerate(self.offsets) if o and (i >= len(counts) or counts[i])]


class _Reader:
    """Reads the header and IFD chain of a classic TIFF or a BigTIFF."""

    def __init__(self, f: BinaryIO, file_size: int) -> None:
        self.f = f
        self.file_size = file_size
        head = self._read(0, 16 if file_size >= 16 else 8, "the TIFF header")
        order = head[:2]
        if order == b"II":
            self.bo = "<"
        elif order == b"MM":
            self.bo = ">"
        else:
            raise _TiffError(f"not a TIFF file: it starts with {head[:4]!r}, not a TIFF byte-order mark (II or MM)")
        (version,) = struct.unpack(self.bo + "H", head[2:4])
        if version == 42:
            self.big = False
            (self.first_ifd,) = struct.unpack(self.bo + "I", head[4:8])
        elif version == 43:
            if len(head) < 16:
                raise _TiffError("truncated BigTIFF header")
            byte_size, _zero, first = struct.unpack(self.bo + "HHQ", head[4:16])
            if byte_size != 8:
                raise _TiffError(f"BigTIFF header gives an offset size of {byte_size}, not 8")
            self.big = True
            self.first_ifd = first
        else:
            raise _TiffError(f"not a TIFF file: version number {version}, not 42 (TIFF) or 43 (BigTIFF)")

    def _read(self, offset: int, n: int, what: str) -> bytes:
        if offset < 0 or offset + n > self.file_size:
            raise _TiffError(f"{what} (bytes {offset} to {offset + n}) lies past the end of the file ({self.file_size} bytes)")
        self.f.seek(offset)
        data = self.f.read(n)
        if len(data) != n:
            raise _TiffError(f"{what}: short read at byte {offset}")
        return data

    def ifds(self) -> list[_Ifd]:
        """Every IFD of the chain, in chain order."""
        result: list[_Ifd] = []
        seen: set[int] = set()
        offset = self.first_ifd
        while offset:
            if offset in seen:
                raise _TiffError(f"the IFD chain loops back to offset {offset}")
            if len(result) >= _MAX_IFDS:
                raise _TiffError(f"more than {_MAX_IFDS} IFDs")
            seen.add(offset)
            ifd, offset = self._ifd(len(result), offset)
            result.append(ifd)
        if not result:
            raise _TiffError("the TIFF header points to no IFD")
        return result

    def _ifd(self, number: int, offset: int) -> tuple[_Ifd, int]:
        count_fmt, count_size, entry_size, off_fmt, off_size = (
            ("Q", 8, 20, "Q", 8) if self.big else ("H", 2, 12, "I", 4)
        )
        what = f"IFD {number}"
        (n_entries,) = struct.unpack(self.bo + count_fmt, self._read(offset, count_size, what))
        table = self._read(offset + count_size, n_entries * entry_size + off_size, what)
        end = offset + count_size + n_entries * entry_size + off_size
        ifd = _Ifd(number=number, offset=offset, end=end)
        entry_fmt = self.bo + ("HHQ" if self.big else "HHI")
        for i in range(n_entries):
            raw = table[i * entry_size : (i + 1) * entry_size]
            tag, ftype, count = struct.unpack(entry_fmt, raw[: entry_size - off_size])
            inline = raw[entry_size - off_size :]
            code, item = _TYPES.get(ftype, ("", 1))
            nbytes = count * item
            if nbytes <= off_size:
                data = inline[:nbytes]
            else:
                (value_offset,) = struct.unpack(self.bo + off_fmt, inline)
                ifd.end = max(ifd.end, value_offset + nbytes)
                if tag not in _INTEGER_TAGS:
                    if value_offset + nbytes > self.file_size:
                        raise _TiffError(f"{what}: the value of tag {tag} lies past the end of the file")
                    continue
                data = self._read(value_offset, nbytes, f"{what}, tag {tag}")
            if tag in _INTEGER_TAGS:
                if not code:
                    raise _TiffError(f"{what}: tag {tag} has field type {ftype}, not an integer type")
                ifd.values[tag] = list(struct.unpack(f"{self.bo}{count}{code}", data))
        (next_offset,) = struct.unpack(self.bo + off_fmt, table[-off_size:])
        return ifd, next_offset


def _classify(ifds: list[_Ifd]) -> list[str]:
    """Give each IFD its role, level and label; return the problems found on the way."""
    problems: list[str] = []
    main = ifds[0]
    main.role, main.level, main.label = "main", 0, "the full-resolution image"
    if main.subfile_type & (REDUCED_RESOLUTION | TRANSPARENCY_MASK):
        problems.append(
            f"the first IFD is a reduced-resolution image or a mask (NewSubfileType {main.subfile_type}), "
            "not the full-resolution image"
        )
    levels = [main]
    for ifd in ifds[1:]:
        kind = ifd.subfile_type
        if kind & TRANSPARENCY_MASK:
            continue
        if kind & REDUCED_RESOLUTION:
            ifd.role, ifd.level = "overview", len(levels)
            ifd.label = f"overview {ifd.level} ({ifd.size})"
            levels.append(ifd)
        else:
            ifd.role, ifd.label = "page", f"IFD {ifd.number} ({ifd.size})"
            problems.append(
                f"IFD {ifd.number} ({ifd.size}) is a second full-resolution page (NewSubfileType {kind}): "
                "a COG holds one image with its overviews and masks"
            )
    by_size = {(lv.width, lv.height): lv for lv in reversed(levels)}
    for ifd in ifds[1:]:
        if not ifd.subfile_type & TRANSPARENCY_MASK:
            continue
        owner = by_size.get((ifd.width, ifd.height))
        ifd.role = "mask"
        if owner is None:
            ifd.label = f"mask IFD {ifd.number} ({ifd.size})"
            problems.append(f"mask IFD {ifd.number} ({ifd.size}) matches the size of no image or overview")
        else:
            ifd.level = owner.level
            ifd.label = f"the mask of {owner.label}"
    return problems


def _layout_problems(ifds: list[_Ifd], file_size: int) -> list[str]:
    problems = _classify(ifds)
    main = ifds[0]
    overviews = [ifd for ifd in ifds if ifd.role == "overview"]

    # tiling
    for ifd in ifds:
        if not ifd.tiled:
            stored = "in strips" if STRIP_OFFSETS in ifd.values else "without tile offsets"
            problems.append(f"{ifd.label} is not tiled (it is stored {stored})")

    # overviews present, and from largest to smallest
    if not overviews and (main.width > 512 or main.height > 512):
        problems.append(
            f"the image is {main.size} px, larger than 512 px on a side, but has no internal overviews"
        )
    previous = main
    for ovr in overviews:
        if ovr.width > previous.width or ovr.height > previous.height or (
            ovr.width == previous.width and ovr.height == previous.height
        ):
            problems.append(
                f"{ovr.label} is not smaller than {previous.label}: overviews must go from largest to smallest"
            )
        if ovr.offset < previous.offset:
            problems.append(
                f"the IFD of {ovr.label} (byte {ovr.offset}) comes before the IFD of {previous.label} "
                f"(byte {previous.offset}): IFDs must follow the main image, largest overview first"
            )
        previous = ovr

    # every IFD before the first tile data
    starts = [s for ifd in ifds for s in ifd.data_starts()]
    if starts:
        first_data = min(starts)
        for ifd in ifds:
            if ifd.end > first_data:
                where = "starts" if ifd.offset >= first_data else "ends"
                at = ifd.offset if ifd.offset >= first_data else ifd.end
                problems.append(
                    f"the IFD of {ifd.label} {where} at byte {at}, after the first tile data (byte {first_data}): "
                    "every IFD must come at the start of the file, before the image data"
                )

    # tile data: smallest overview first, full resolution last
    level_starts: dict[int, list[int]] = {}
    for ifd in ifds:
        if ifd.level >= 0:
            level_starts.setdefault(ifd.level, []).extend(ifd.data_starts())
    labels = {ifd.level: ifd.label for ifd in ifds if ifd.role in ("main", "overview")}
    for level in range(len(overviews)):
        larger, smaller = level_starts.get(level, []), level_starts.get(level + 1, [])
        if larger and smaller and max(smaller) > min(larger):
            problems.append(
                f"tile data of {labels[level + 1]} is not all before the tile data of {labels[level]} "
                f"(byte {max(smaller)} > byte {min(larger)}): the smallest overview's data must come first "
                "and the full-resolution image's last"
            )

    # blocks of each IFD: count, order, inside the file
    for ifd in ifds:
        offsets, counts = ifd.offsets, ifd.byte_counts
        if len(offsets) != len(counts):
            problems.append(
                f"{ifd.label} has {len(offsets)} block offsets but {len(counts)} block byte counts"
            )
        if ifd.tiled:
            tw, th = ifd.first(TILE_WIDTH), ifd.first(TILE_LENGTH)
            if tw <= 0 or th <= 0:
                problems.append(f"{ifd.label} has a tile size of {tw}x{th}")
                continue
            across, down = -(-ifd.width // tw), -(-ifd.height // th)
            planes = ifd.first(SAMPLES_PER_PIXEL, 1) if ifd.first(PLANAR_CONFIGURATION, 1) == 2 else 1
            expected = across * down * planes
            if len(offsets) != expected:
                problems.append(
                    f"{ifd.label} has {len(offsets)} tile offsets, not the {expected} its "
                    f"{ifd.size} px in {tw}x{th} tiles need"
                )
        else:
            across, down = 1, max(len(offsets), 1)
        per_plane = max(across * down, 1)
        last_index, last_offset = -1, 0
        for i, offset in enumerate(offsets):
            if not offset:
                continue
            if offset < last_offset:
                problems.append(
                    f"{ifd.label}: {_block_name(i, across, per_plane, ifd.tiled)} starts at byte {offset}, "
                    f"before {_block_name(last_index, across, per_plane, ifd.tiled)} (byte {last_offset}): "
                    "tiles must be stored in row-major order"
                )
                break
            last_index, last_offset = i, offset
        for i, offset in enumerate(offsets):
            if offset and i < len(counts) and offset + counts[i] > file_size:
                problems.append(
                    f"{ifd.label}: {_block_name(i, across, per_plane, ifd.tiled)} (bytes {offset} to "
                    f"{offset + counts[i]}) runs past the end of the file ({file_size} bytes)"
                )
                break
    return problems


def _block_name(index: int, across: int, per_plane: int, tiled: bool) -> str:
    if not tiled:
        return f"strip {index}"
    plane, rest = divmod(index, per_plane)
    row, col = divmod(rest, across)
    band = f", band plane {plane}" if plane else ""
    return f"tile {index} (row {row}, column {col}{band})"


def cog_problems(path: str | os.PathLike[str]) -> list[str]:
    """List the ways a file departs from the Cloud Optimized GeoTIFF layout.

    Parameters
    ----------
    path : str or os.PathLike
        File to check.

    Returns
    -------
    list of str
        One sentence per problem found; empty when the file is a valid COG.

    Raises
    ------
    OSError
        When the file cannot be opened or read.

    Notes
    -----
    Only the TIFF structure is read (header, IFD chain, tile offsets and byte counts); pixel data
    is neither read nor decoded. See the module docstring for the list of checks.
    """
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            reader = _Reader(f, file_size)
            ifds = reader.ifds()
        except _TiffError as exc:
            return [str(exc)]
        except struct.error as exc:  # pragma: no cover - defensive: malformed field
            return [f"malformed TIFF structure: {exc}"]
    return _layout_problems(ifds, file_size)
