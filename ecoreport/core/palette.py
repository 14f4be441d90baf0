"""The chart colours shared by the pages (plotly) and the reports (HTML and PDF)."""

# Okabe & Ito (2008), distinguishable with the common forms of colour blindness.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
