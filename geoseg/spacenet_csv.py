"""The SpaceNet road submission format: a CSV of ``ImageId,WKT_Pix`` rows.

Road proposals for SpaceNet 3 (and the reference APLS code, CosmiQ Works ``apls``) are
exchanged as one CSV for many images: each row holds an image id and one ``LINESTRING`` in
that image's pixel coordinates (column, row; ``LINESTRING EMPTY`` for an image without
roads). The image itself gives the georeferencing: pixel ``(c, r)`` is at ``transform * (c, r)``
(the corner convention of the reference code, no half-pixel shift).

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = pathlib.Path(tmp) / "sub.csv"
...     _ = path.write_text('ImageId,WKT_Pix\\nimg0,"LINESTRING (0 0, 10 0)"\\nimg1,LINESTRING EMPTY\\n')
...     image, lines = read_wkt_pix(path, "img0")
...     empty = read_wkt_pix(path, "img1")
>>> image, [line.length for line in lines]
('img0', [10.0])
>>> empty
('img1', [])
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import shapely
from shapely.geometry import LineString

from geoseg.errors import InputMismatchError, VectorReadError

__all__ = ["read_wkt_pix", "image_id_for"]

_COLUMNS = ("ImageId", "WKT_Pix")
#: Prefixes of SpaceNet image file names that are not part of the image id.
_IMAGE_PREFIXES = re.compile(r"^(RGB-PanSharpen|MUL-PanSharpen|PS-RGB|PS-MS|MUL|PAN)_")


def _rows(path: Path) -> list[tuple[str, str]]:
    """The ``(ImageId, WKT_Pix)`` rows of a submission CSV."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputMismatchError(
                    f"{path}: not a SpaceNet road CSV: columns {', '.join(missing)} missing "
                    f"(found {', '.join(reader.fieldnames or []) or 'none'}; expected ImageId,WKT_Pix)"
                )
            return [(row["ImageId"].strip(), (row["WKT_Pix"] or "").strip()) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VectorReadError(f"{path}: cannot read the CSV ({exc})") from None


def image_id_for(image: str | os.PathLike[str]) -> str:
    """The SpaceNet image id of an image file: its stem without a band-kind prefix.

    Parameters
    ----------
    image : path-like
        The image file (it is not opened).

    Returns
    -------
    str
        The file's stem, without a prefix such as ``RGB-PanSharpen_`` or ``PS-MS_``.

    Examples
    --------
    >>> image_id_for("images/RGB-PanSharpen_AOI_2_Vegas_img0.tif")
    'AOI_2_Vegas_img0'
    >>> image_id_for("PS-MS_AOI_3_Paris_img12.tif"), image_id_for("my_tile.tif")
    ('AOI_3_Paris_img12', 'my_tile')
    """
    return _IMAGE_PREFIXES.sub("", Path(str(image)).stem)


def read_wkt_pix(path: str | os.PathLike[str], image_id: str | None = None, *, default_id: str | None = None) -> tuple[str, list[LineString]]:
    """The lines of one image in a SpaceNet submission CSV, in pixel coordinates.

    Parameters
    ----------
    path : path-like
        CSV with columns ``ImageId`` and ``WKT_Pix``.
    image_id : str, optional
        The image whose rows to read; by default the file's only image, or ``default_id``
        when it holds several.
    default_id : str, optional
        The image to read when ``image_id`` is not given and the file holds several.

    Returns
    -------
    image_id : str
        The image id read.
    lines : list of shapely.geometry.LineString
        Its lines (``MULTILINESTRING`` rows are split into their parts; empty parts are
        dropped, so the list is empty when its only row is ``LINESTRING EMPTY``).

    Raises
    ------
    InputMismatchError
        The file lacks the columns, has no row for the image (the message lists the ids it
        has), or a row is not WKT or not a line.
    VectorReadError
        The file cannot be read (missing, not UTF-8, malformed CSV).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "sub.csv"
    ...     _ = path.write_text(
    ...         "ImageId,WKT_Pix\\n"
    ...         'img0,"MULTILINESTRING ((0 0, 3 4), (5 5, 5 9))"\\n'
    ...         "img1,LINESTRING EMPTY\\n"
    ...     )
    ...     image, lines = read_wkt_pix(path, default_id="img0")
    ...     try:
    ...         read_wkt_pix(path, "img2")
    ...     except InputMismatchError as exc:
    ...         message = str(exc).split(": ", 1)[1]
    >>> image, [line.length for line in lines]
    ('img0', [5.0, 4.0])
    >>> message
    "no rows for image id 'img2' (it has img0, img1); pick one with --image-id"
    """
    path = Path(path)
    rows = _rows(path)
    if image_id is None:
        ids = list(dict.fromkeys(image for image, _ in rows))
        image_id = ids[0] if len(ids) == 1 else default_id or ""
    mine = [(n, wkt) for n, (image, wkt) in enumerate(rows, start=2) if image == image_id]
    if not mine:
        ids = list(dict.fromkeys(image for image, _ in rows))
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise InputMismatchError(f"{path}: no rows for image id {image_id!r} (it has {shown or 'no rows'}); pick one with --image-id")
    lines: list[LineString] = []
    for line_no, wkt in mine:
        try:
            geom = shapely.from_wkt(wkt)
        except shapely.errors.GEOSException as exc:
            raise InputMismatchError(f"{path}, line {line_no}: WKT_Pix is not WKT ({exc})") from None
        if geom.geom_type not in ("LineString", "MultiLineString"):
            raise InputMismatchError(f"{path}, line {line_no}: WKT_Pix is a {geom.geom_type}, expected a LINESTRING")
        lines.extend(p for p in shapely.get_parts(geom) if not p.is_empty)
    return image_id, lines
