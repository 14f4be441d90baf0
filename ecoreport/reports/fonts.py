"""Fonts for the PDF report, so that names in any script (team, project, site, target and
organization names are user-supplied) draw with real glyphs in its tables and charts.

Text stays in Helvetica, the PDF's built-in font, wherever Helvetica has the characters (it is
not embedded: no cost). Each run of characters it lacks switches to the first fallback face
that has them; both fallbacks come from pip wheels, so a fresh ``make install`` has them offline:

* DejaVu Sans, shipped in matplotlib's own data: Latin, Cyrillic, symbols (``⟨⟩``);
* IPAexGothic, shipped by ``matplotlib-fontja`` (IPA Font Licence): kana and about 10,000 kanji;
* then, for Hangul and the Chinese characters IPAexGothic lacks, reportlab's built-in CID fonts
  (``CID_FACES``), which the viewer draws.

reportlab embeds only the glyphs a report uses (a subset with a ToUnicode map), so the text stays
extractable and a report with a few such names grows by a few kilobytes. The charts use the same
two embedded faces as matplotlib's family list (matplotlib falls back glyph by glyph). A character
that no face has (in charts: Hangul too, as no pip wheel ships a Korean face matplotlib reads)
is written as its code point, ``⟨U+AC00⟩``, as ``label_display`` writes invisible ones: never a
missing-glyph box.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

BASE = "Helvetica"
BASE_BOLD = "Helvetica-Bold"


@dataclass(frozen=True)
class Face:
    name: str  # reportlab's font name, and matplotlib's family name
    bold: str  # reportlab's name for the bold face (the regular one where there is none)
    path: str
    bold_path: str


def _mpl_font(file: str) -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", file)


def _fontja_font() -> str | None:
    # Found without importing matplotlib_fontja: its import changes matplotlib's global rcParams.
    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "fonts", "ipaexg.ttf")
    return path if os.path.exists(path) else None


@cache
def faces() -> tuple[Face, ...]:
    """The fallback faces, in the order they are tried."""
    found = [
        Face(
            "DejaVuSans",
            "DejaVuSans-Bold",
            _mpl_font("DejaVuSans.ttf"),
            _mpl_font("DejaVuSans-Bold.ttf"),
        )
    ]
    cjk = _fontja_font()
    if cjk:
        found.append(Face("IPAexGothic", "IPAexGothic", cjk, cjk))
    return tuple(found)


@cache
def _codepoints(path: str) -> frozenset[int]:
    # fontTools comes with matplotlib; lazy=True reads the cmap table alone.
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap())


@cache
def _in_base(ch: str) -> bool:
    """Whether Helvetica draws ``ch``: WinAnsi, or the Symbol font that reportlab itself
    switches to for Greek and maths (``Σ`` in the methodology), which is built in too."""
    from reportlab.pdfbase import pdfmetrics

    if not (ch.isprintable() or ch in "\t\n"):
        return False
    for name in (BASE, "Symbol"):
        try:
            ch.encode(pdfmetrics.getFont(name).encName)
        except UnicodeEncodeError:
            continue
        return True
    return False


@dataclass(frozen=True)
class CidFace:
    """One of reportlab's built-in CID fonts: not embedded (the viewer brings its glyphs, as
    Acrobat, Preview and pdf.js do), so it costs nothing, but no glyph here can be checked."""

    name: str
    ranges: tuple[tuple[int, int], ...]
    bold: str = ""


# Tried after the embedded faces: what IPAexGothic lacks of Korean and Chinese.
CID_FACES = (
    CidFace(
        "HYGothic-Medium",  # Adobe-Korea1: every modern Hangul syllable, jamo
        ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7A3)),
    ),
    CidFace(
        "STSong-Light",  # Adobe-GB1: simplified (and most traditional) Chinese
        ((0x3000, 0x303F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF)),
    ),
)


@cache
def face_for(ch: str) -> Face | CidFace | None:
    """The first fallback face that has ``ch``; None when Helvetica has it or no face does."""
    if _in_base(ch):
        return None
    for face in faces():
        if ord(ch) in _codepoints(face.path):
            return face
    for cid in CID_FACES:
        if any(low <= ord(ch) <= high for low, high in cid.ranges):
            return cid
    return None


def code_point(ch: str) -> str:
    return f"\u27e8U+{ord(ch):04X}\u27e9"


def runs(text: str) -> list[tuple[Face | CidFace | None, str]]:
    """``text`` cut into runs that one face draws (None: Helvetica). A character that no face
    has becomes its code point, drawn in DejaVu Sans."""
    out: list[tuple[Face | CidFace | None, str]] = []
    for ch in text:
        face = face_for(ch)
        if face is None and not _in_base(ch):
            face, ch = faces()[0], code_point(ch)
        if out and out[-1][0] == face:
            out[-1] = (face, out[-1][1] + ch)
        else:
            out.append((face, ch))
    return out


_registered: set[str] = set()
_lock = threading.Lock()


def _register(face: Face | CidFace) -> None:
    # Parsing a face costs up to half a second (IPAexGothic is 6 MB), so each is read once per
    # process, and only when a report needs it.
    if face.name in _registered:
        return
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfbase.ttfonts import TTFont

    with _lock:
        if face.name in _registered:
            return
        bold = face.bold or face.name
        if isinstance(face, CidFace):
            pdfmetrics.registerFont(UnicodeCIDFont(face.name))
        else:
            # asciiReadable=False: a subset holds the glyphs used, not all of ASCII besides
            # (16 kB of DejaVu glyphs for a name's two brackets); ToUnicode keeps it readable.
            pdfmetrics.registerFont(TTFont(face.name, face.path, asciiReadable=False))
            if face.bold != face.name:
                pdfmetrics.registerFont(TTFont(face.bold, face.bold_path, asciiReadable=False))
        # <b> inside a <font name=...> run picks the bold face (no italic is used).
        for b, italic in ((0, 0), (1, 0), (0, 1), (1, 1)):
            addMapping(face.name, b, italic, bold if b else face.name)
        _registered.add(face.name)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markup(text: str) -> str:
    """``text`` escaped for a reportlab Paragraph, with each run that Helvetica lacks set in its
    fallback face."""
    if text.isascii():
        return _escape(text)  # the common case: no per-character work
    parts = []
    for face, run in runs(text):
        if face is None:
            parts.append(_escape(run))
        else:
            _register(face)
            parts.append(f'<font name="{face.name}">{_escape(run)}</font>')
    return "".join(parts)


def draw_string(canvas: Any, x: float, y: float, text: str, *, size: float) -> None:
    """``canvas.drawString`` in Helvetica with the same per-run fallback as ``markup``."""
    label = canvas.beginText(x, y)
    for face, run in runs(text):
        if face is not None:
            _register(face)
        label.setFont(face.name if face else BASE, size)
        label.textOut(run)
    canvas.drawText(label)


def chart_families() -> list[str]:
    """matplotlib's font family list for the charts, each face registered with matplotlib."""
    from matplotlib import font_manager

    known = {f.fname for f in font_manager.fontManager.ttflist}
    for face in faces():
        if face.path not in known:
            font_manager.fontManager.addfont(face.path)
    return ["DejaVu Sans", *(f.name for f in faces()[1:])]


def chart_text(text: str) -> str:
    """``text`` for a chart: each character that no chart face has, as its code point (matplotlib
    would draw a box and warn). Helvetica is not a chart face: DejaVu Sans has all of WinAnsi."""
    if text.isascii():
        return text
    out = []
    for ch in text:
        if ch in "\n" or any(ord(ch) in _codepoints(f.path) for f in faces()):
            out.append(ch)
        else:
            out.append(code_point(ch))
    return "".join(out)
