"""The batch report as one HTML page: a sortable summary table, then one card per scene.

The page needs no network and no JavaScript framework: styles are inline, thumbnails are PNG
files beside the page (``report_files/``) or base64 data URIs inside it, and about twenty
lines of vanilla JavaScript sort the table by a click on any column header and enlarge a
thumbnail by a click on it. Without JavaScript the page is complete, in the initial order.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

from geoseg.evaluate import Evaluation
from geoseg.report.overlay import NO_CONFIDENCE_COLOUR, RAMP
from geoseg.report.stats import NetworkStats

__all__ = ["SceneRow", "render_html", "order_rows"]


@dataclass
class SceneRow:
    """Everything the report shows about one scene.

    Attributes
    ----------
    name : str
        The scene's file stem (its output name).
    input : str
        The scene path as given to ``geoseg run``.
    status : str
        ``"done"`` or ``"failed"``.
    seconds : float
        Processing time.
    error : str or None
        Why the scene failed.
    warnings : list of str
        Warnings of the run and of the report (no georeferencing, no truth file, ...).
    network : str or None
        The network file drawn and measured.
    stats : NetworkStats or None
        Length and topology of the network.
    truth : str or None
        The truth file matched by stem.
    scores : Evaluation or None
        Scores against ``truth``.
    image : str or None
        The overlay: a path relative to the page, or a ``data:image/png;base64,...`` URI.
    thumb : str or None
        A small copy of the overlay for the summary table, likewise.
    changes : dict or None
        Map updating: each change class's total as text (``new``, ``missing``, ``matched``, ``links``).
    changes_image : str or None
        The change classes drawn over the scene, like ``image``.
    """

    name: str
    input: str
    status: str
    seconds: float = math.nan
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    network: str | None = None
    stats: NetworkStats | None = None
    truth: str | None = None
    scores: Evaluation | None = None
    image: str | None = None
    thumb: str | None = None
    changes: dict[str, str] | None = None
    changes_image: str | None = None


def order_rows(rows: list[SceneRow]) -> list[SceneRow]:
    """Worst first: failed scenes, then by increasing quality, then scenes without scores (stable).

    Parameters
    ----------
    rows : list of SceneRow
        The scenes (not modified).

    Returns
    -------
    list of SceneRow
        The same rows, sorted: scenes whose ``status`` is not ``"done"`` first, then done
        scenes by increasing ``scores.quality``, then done scenes without a finite quality.

    Examples
    --------
    >>> statuses = [("a", "done"), ("b", "failed"), ("c", "done")]
    >>> rows = [SceneRow(name, f"{name}.tif", status) for name, status in statuses]
    >>> [row.name for row in order_rows(rows)]
    ['b', 'a', 'c']
    """

    def key(row: SceneRow) -> tuple[int, float]:
        if row.status != "done":
            return 0, 0.0
        if row.scores is not None and math.isfinite(row.scores.quality):
            return 1, row.scores.quality
        return 2, 0.0

    return sorted(rows, key=key)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}
.meta{color:#555;margin:0 0 14px}.meta code{background:#eee;padding:0 4px;border-radius:3px}
.legend{display:flex;flex-wrap:wrap;gap:18px;align-items:center;margin:0 0 14px;font-size:13px}
.ramp{display:inline-block;width:140px;height:10px;border:1px solid #333;vertical-align:middle;margin:0 4px}
.sw{display:inline-block;vertical-align:middle;margin-right:4px}
.sw.na{width:22px;height:4px;background:rgb%s;border:1px solid #000}
.sw.jn{width:10px;height:10px;border-radius:50%%;background:#fff;border:2px solid #000}
.sw.de{width:10px;height:10px;background:#000;border:2px solid #fff;outline:1px solid #999}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px rgba(0,0,0,.15);margin-bottom:24px}
th,td{padding:4px 8px;border-bottom:1px solid #e4e4e4;text-align:right;vertical-align:middle}
th{background:#2f3b4c;color:#fff;position:sticky;top:0;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.text,th.text{text-align:left}td.msg{text-align:left;max-width:420px;font-size:12px;color:#8a5a00}
tr.failed td{background:#fdecea}tr.failed td.msg{color:#b00020}
td img{width:96px;height:auto;display:block}
.bad{color:#b00020;font-weight:600}.ok{color:#1b7e3c}
.cards{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.card{background:#fff;box-shadow:0 1px 3px rgba(0,0,0,.15);padding:12px;width:480px}
.card.failed{border-left:5px solid #b00020}
.card img{width:100%%;height:auto;cursor:zoom-in;display:block}
.card img.zoom{position:fixed;inset:2vh 2vw;width:96vw;height:96vh;object-fit:contain;background:rgba(0,0,0,.85);z-index:9;cursor:zoom-out}
.card dl{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:8px 0 0}.card dt{color:#666}.card dd{margin:0}
.card ul{margin:6px 0 0;padding-left:18px;color:#8a5a00;font-size:12px}.error{color:#b00020;white-space:pre-wrap}
""" % (str(NO_CONFIDENCE_COLOUR),)  # noqa: UP031 - CSS is full of braces: % keeps it readable

_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var asc = th.getAttribute("aria-sort") !== "ascending", num = th.dataset.type === "number";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var d = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return asc ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.querySelectorAll(".card img").forEach(function (img) {
  img.addEventListener("click", function () { img.classList.toggle("zoom"); });
});
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | int | None, fmt: str) -> tuple[str, str]:
    """(data-value, shown text) of a number; empty for None/NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "", "&ndash;"
    return repr(value), format(value, fmt)


def _cell(value: str, text: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-value="{_esc(value)}">{text}</td>'


def _columns(with_truth: bool) -> list[tuple[str, str, str]]:
    cols = [
        ("scene", "text", "Scene"),
        ("overlay", "text", "Overlay"),
        ("status", "text", "Status"),
        ("road_km", "number", "Road km"),
        ("edges", "number", "Edges"),
        ("junctions", "number", "Junctions"),
        ("dead_ends", "number", "Dead ends"),
        ("confidence", "number", "Mean conf."),
        ("seconds", "number", "Seconds"),
    ]
    if with_truth:
        cols += [
            ("completeness", "number", "Completeness"),
            ("correctness", "number", "Correctness"),
            ("quality", "number", "Quality"),
            ("apls", "number", "APLS"),
            ("topo_f1", "number", "TOPO F1"),
            ("junction_f1", "number", "Junction F1"),
            ("component_ratio", "number", "Comp. ratio"),
        ]
    return cols + [("messages", "text", "Error / warnings")]


def _row_cells(row: SceneRow, with_truth: bool) -> list[str]:
    s = row.stats
    thumb = f'<a href="#scene-{_esc(row.name)}"><img src="{_esc(row.thumb)}" alt="overlay of {_esc(row.name)}" loading="lazy"></a>' if row.thumb else ""
    status_cls = "ok" if row.status == "done" else "bad"
    cells = [
        _cell(row.name, f'<a href="#scene-{_esc(row.name)}">{_esc(row.name)}</a>', "text"),
        _cell(row.name, thumb, "text"),
        _cell(row.status, f'<span class="{status_cls}">{_esc(row.status)}</span>', "text"),
        _cell(*_num(s.road_km if s else None, ".3f")),
        _cell(*_num(s.edges if s else None, "d")),
        _cell(*_num(s.junctions if s else None, "d")),
        _cell(*_num(s.dead_ends if s else None, "d")),
        _cell(*_num(s.mean_confidence if s else None, ".2f")),
        _cell(*_num(row.seconds, ".2f")),
    ]
    if with_truth:
        scores = row.scores.to_dict() if row.scores else {}
        for name in ("completeness", "correctness", "quality", "apls", "topo_f1", "junction_f1", "component_ratio"):
            value = scores.get(name)
            cells.append(_cell(*_num(value if isinstance(value, int | float) else None, ".3f")))
    messages = ([row.error] if row.error else []) + row.warnings
    cells.append(_cell(" | ".join(messages), "<br>".join(_esc(m) for m in messages), "msg"))
    return cells


def _card(row: SceneRow, with_truth: bool) -> str:
    s, e = row.stats, row.scores
    facts = [("input", _esc(row.input)), ("status", _esc(row.status)), ("seconds", _num(row.seconds, ".2f")[1])]
    if s:
        facts += [("road length", f"{s.road_km:.3f} km in {s.edges} edges"), ("nodes", f"{s.junctions} junctions, {s.dead_ends} dead ends")]
    if row.network:
        facts.append(("network", _esc(row.network)))
    if with_truth:
        facts.append(("truth", _esc(row.truth) if row.truth else "&ndash;"))
    if e:
        facts.append(
            (
                "scores",
                f"completeness {e.completeness:.3f}, correctness {e.correctness:.3f}, "
                f"quality {e.quality:.3f}, APLS {e.apls:.3f} (buffer {e.tolerance:g} {e.tolerance_unit})",
            )
        )
        facts += e.graph.summary(missing="&ndash;")
    parts = [f'<section class="card{" failed" if row.status != "done" else ""}" id="scene-{_esc(row.name)}">', f"<h2>{_esc(row.name)}</h2>"]
    if row.image:
        parts.append(f'<img src="{_esc(row.image)}" alt="overlay of {_esc(row.name)}" loading="lazy" title="click to enlarge">')
    if row.changes_image:
        parts.append(f'<img src="{_esc(row.changes_image)}" alt="map changes of {_esc(row.name)}" loading="lazy" title="click to enlarge">')
    if row.changes:
        facts += [(f"map: {name.replace('_', ' ')}", _change_swatch(name) + _esc(text)) for name, text in row.changes.items()]
    if row.error:
        parts.append(f'<p class="error">{_esc(row.error)}</p>')
    parts.append("<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
    if row.warnings:
        parts.append("<ul>" + "".join(f"<li>{_esc(w)}</li>" for w in row.warnings) + "</ul>")
    return "".join(parts) + "</section>"


def _change_swatch(name: str) -> str:
    from geoseg.report.changes import CHANGE_COLOURS

    colour = CHANGE_COLOURS.get(name, CHANGE_COLOURS["new_link"])
    return f'<span class="sw" style="background:rgb{colour}"></span>'


def render_html(
    rows: list[SceneRow],
    *,
    title: str,
    details: list[tuple[str, str]],
    with_truth: bool,
) -> str:
    """The report page.

    Parameters
    ----------
    rows : list of SceneRow
        The scenes, in the order to show them first (see :func:`order_rows`).
    title : str
        Page title.
    details : list of (str, str)
        Label/value pairs shown under the title (pipeline, output folder, truth, ...).
    with_truth : bool
        Show the completeness / correctness / quality / APLS / TOPO F1 / junction F1 /
        component ratio columns.

    Returns
    -------
    str
        A complete HTML5 document, with one summary table row and one card per scene.

    Examples
    --------
    >>> rows = [SceneRow("a", "a.tif", "done")]
    >>> page = render_html(rows, title="Roads <1>", details=[("pipeline", "p.yaml")], with_truth=False)
    >>> page[:15], page.count('<tr class="done"')
    ('<!DOCTYPE html>', 1)
    >>> page[page.index("<title>") : page.index("</title>")]
    '<title>Roads &lt;1&gt;'

    """
    stops = ", ".join(f"rgb{c} {100 * t:.0f}%" for t, c in RAMP)
    meta = " &middot; ".join(f"{_esc(k)}: <code>{_esc(v)}</code>" for k, v in details)
    head = "".join(f'<th class="{kind}" data-type="{kind}" data-key="{key}">{label}</th>' for key, kind, label in _columns(with_truth))
    body = "".join(f'<tr class="{row.status}" data-scene="{_esc(row.name)}">' + "".join(_row_cells(row, with_truth)) + "</tr>" for row in rows)
    legend = (
        f'<div class="legend"><span>edge confidence 0'
        f'<span class="ramp" style="background:linear-gradient(to right, {stops})"></span>1</span>'
        '<span><span class="sw na"></span>no confidence value</span>'
        '<span><span class="sw jn"></span>junction (degree &ge; 3)</span>'
        '<span><span class="sw de"></span>dead end (degree 1)</span>'
        "<span>click a column header to sort, a picture to enlarge</span></div>"
    )
    cards = "".join(_card(row, with_truth) for row in rows)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{_esc(title)}</h1><p class="meta">{meta}</p>{legend}'
        f'<table id="summary" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        f'<div class="cards">{cards}</div><script>{_JS}</script></body></html>\n'
    )
