"""The chart colours shared by the pages (plotly) and the reports (HTML and PDF)."""

# Okabe & Ito (2008), distinguishable with the common forms of colour blindness.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# Work no team or project owns: grey on every chart, never a team's colour.
UNATTRIBUTED_COLOUR = "#999999"


def colours_in_order(keys: list[str]) -> dict[str, str]:
    """One colour per key, by its position in ``keys`` (a stable order: creation), so a team
    keeps its colour whatever the period, the page or the report ranks it."""
    return {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(keys)}
