"""Issue 12: names in any script are displayable in the PDF report too. Helvetica draws what it
has; each run it lacks is set in an embedded fallback face that has the glyphs (fonts.py), the
charts fall back the same way, and nothing draws as a missing-glyph box."""

from __future__ import annotations

import io
import re
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from ecoreport.core.periods import parse_period
from ecoreport.reports import fonts
from ecoreport.reports import services as reports
from ecoreport.reports.models import ReportFile
from ecoreport.reports.pdf import _chart_png
from tests.conftest import make_batch, make_sample

# Label as sent -> the name its team and project are shown under (tests/backend/test_label_names).
SHOWN = {
    "研究チーム": "研究チーム",
    "Équipe": "Équipe",
    "Èquipe": "Èquipe",
    "nlp": "nlp",
    "nlp\u200b": "nlp\u27e8U+200B\u27e9",
}
ORG_NAME = "Forschungsgruppe Ökologie 研究所"
# Drawn with reportlab's CID fonts: no embedded glyphs to check, but text all the same.
CID_NAMES = ["연구팀", "研究团队"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nlp", [(None, "nlp")]),
        ("Équipe", [(None, "Équipe")]),  # WinAnsi: Helvetica has it
        (
            "nlp\u27e8U+200B\u27e9",
            [(None, "nlp"), ("DejaVuSans", "⟨"), (None, "U+200B"), ("DejaVuSans", "⟩")],
        ),
        ("研究チーム", [("IPAexGothic", "研究チーム")]),
        ("Team 研究", [(None, "Team "), ("IPAexGothic", "研究")]),
        ("Ωmega", [(None, "Ωmega")]),  # reportlab's own Symbol font, built in too
        ("Жук", [("DejaVuSans", "Жук")]),
        # Not embedded: reportlab's CID fonts, for what IPAexGothic lacks.
        ("팀 a", [("HYGothic-Medium", "팀"), (None, " a")]),
        ("研究团队", [("IPAexGothic", "研究"), ("STSong-Light", "团队")]),
        # No face has Devanagari: its code point, drawn in DejaVu Sans, never a box.
        ("क", [("DejaVuSans", "⟨U+0915⟩")]),
    ],
)
def test_text_is_cut_into_runs_of_a_face_that_has_the_glyphs(text, expected):
    got = [(face.name if face else None, run) for face, run in fonts.runs(text)]
    assert got == expected


def test_fallback_faces_come_from_installed_wheels():
    assert [f.name for f in fonts.faces()] == ["DejaVuSans", "IPAexGothic"]


def test_markup_escapes_and_wraps_runs():
    assert fonts.markup("a<b>&") == "a&lt;b&gt;&amp;"
    assert fonts.markup("R&D 研究") == 'R&amp;D <font name="IPAexGothic">研究</font>'


@pytest.fixture
def labelled(cast, agent, post_batch):
    import time_machine

    cast.org.name = ORG_NAME
    cast.org.save(update_fields=["name"])
    start = datetime(2026, 8, 3, 10, 0, tzinfo=UTC)
    samples = [
        make_sample(
            start=start + timedelta(minutes=i),
            seconds=60,
            energy_j=10_000.0 + 1_000.0 * i,
            attribution=[{"share": 1.0, "team": label, "project": label}],
        )
        for i, label in enumerate([*SHOWN, *CID_NAMES])
    ]
    with time_machine.travel(datetime(2026, 10, 20, 12, 0, tzinfo=UTC), tick=False):
        response = post_batch(agent.token, make_batch(samples))
        assert response.json()["accepted"] == len(SHOWN) + len(CID_NAMES), response.content
        yield cast


def _glyphs_by_font(reader: PdfReader) -> dict[str, set[str]]:
    """For each embedded TrueType font of the PDF: the characters it maps (ToUnicode) to a real
    glyph of its embedded font file (not .notdef, with an outline)."""
    out: dict[str, set[str]] = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font.get("/FontDescriptor")
            if descriptor is None or "/FontFile2" not in descriptor.get_object():
                continue
            embedded = TTFont(io.BytesIO(descriptor.get_object()["/FontFile2"].get_data()))
            # reportlab's subsets map their one-byte codes with a Mac (1, 0) cmap.
            code_to_glyph = embedded["cmap"].tables[0].cmap
            glyf = embedded["glyf"]
            chars = out.setdefault(str(font["/BaseFont"]), set())
            cmap = font["/ToUnicode"].get_data().decode("latin-1")
            for code, uni in re.findall(r"<([0-9A-Fa-f]{2})>\s*<([0-9A-Fa-f]{4,8})>", cmap):
                name = code_to_glyph.get(int(code, 16))
                real = name and name != ".notdef" and glyf[name].numberOfContours != 0
                if real and int(uni, 16):
                    chars.add(chr(int(uni, 16)))
    return out


def test_pdf_names_are_text_and_their_fonts_have_the_glyphs(labelled):
    report = reports.report_generate(organization=labelled.org, period=parse_period("2026-Q3"))
    data = bytes(ReportFile.objects.get(report=report, format="pdf").content)
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    for name in [*SHOWN.values(), ORG_NAME, *CID_NAMES]:
        assert name in text, name

    embedded = _glyphs_by_font(reader)
    assert {f.split("+")[-1] for f in embedded} >= {"DejaVuSans", "IPAexGothic"}
    for name in [*SHOWN.values(), ORG_NAME]:
        for face, run in fonts.runs(name):
            if face is None:
                run.encode("cp1252")  # Helvetica's glyphs: WinAnsi (no Greek in these names)
                continue
            have = set().union(*(c for f, c in embedded.items() if f.endswith(face.name)))
            assert set(run) - {" "} <= have, (name, face.name, set(run) - have)
    used = {
        str(f.get_object()["/BaseFont"])
        for p in reader.pages
        for f in p["/Resources"]["/Font"].values()
    }
    assert {"/HYGothic-Medium", "/STSong-Light"} <= used
    # Subsets: the 6 MB Japanese face adds a few kilobytes, not megabytes.
    assert len(data) < 200_000


def _team_chart(names):
    def draw(ax):
        ax.barh([fonts.chart_text(n) for n in names], range(1, len(names) + 1))

    return _chart_png(draw)


def test_charts_draw_cjk_names_without_a_missing_glyph(recwarn):
    assert (
        fonts.chart_text("팀 研究团队")
        == "\u27e8U+D300\u27e9 研究\u27e8U+56E2\u27e9\u27e8U+961F\u27e9"
    )
    png = _team_chart([*SHOWN.values(), *CID_NAMES])
    assert png.getvalue().startswith(b"\x89PNG")
    assert not [w for w in recwarn if "missing from font" in str(w.message)]


def test_without_the_fallback_family_matplotlib_warns_of_the_missing_glyph():
    # The check above can fail: DejaVu Sans alone has no kana.
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}), warnings.catch_warnings():
        warnings.simplefilter("always")
        fig = Figure()
        fig.add_subplot(1, 1, 1).barh(["研究チーム"], [1])
        with pytest.warns(UserWarning, match="missing from font"):
            fig.savefig(io.BytesIO(), format="png")
