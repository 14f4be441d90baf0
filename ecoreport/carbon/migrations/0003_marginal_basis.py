"""Basis ``marginal`` beside location and market; WattTime's co2_moer rows (a marginal rate,
stored until now as location-based factors) become marginal, and the hours whose emissions used
them are recomputed from grid-average factors once the migration has committed. Zones with
annual market factors are recomputed too: the resolver no longer lends a later year's market
factor to an earlier year, and flags an earlier one carried forward."""

from django.db import migrations, models

WATTTIME_SOURCE_PREFIX = "WattTime v3 co2_moer"


def reclassify(apps, schema_editor):
    from django.db import transaction

    model = apps.get_model("carbon", "CarbonIntensity")
    rows = model.objects.filter(basis="location", source__startswith=WATTTIME_SOURCE_PREFIX)
    spans = {}
    for zone, start, end in rows.values_list("zone", "start", "end"):
        lo, hi = spans.get(zone, (start, end))
        spans[zone] = (min(lo, start), max(hi, end))
    if spans:
        rows.update(basis="marginal")
    market_zones = set(
        model.objects.filter(basis="market", resolution="year").values_list("zone", flat=True)
    )
    if not spans and not market_zones:
        return

    def enqueue():
        # The worker recomputes with the code and schema of the release, after every migration.
        # By name: the task lives beside the rollup (accounting.tasks) and keeps this name.
        from ecoreport.core.enqueue import enqueue

        for zone, (lo, hi) in sorted(spans.items()):
            enqueue(
                "carbon.recompute_emissions", start=lo.isoformat(), end=hi.isoformat(), zone=zone
            )
        for zone in sorted(market_zones):
            enqueue(
                "carbon.recompute_emissions",
                start="2000-01-01T00:00:00+00:00",
                end="2200-01-01T00:00:00+00:00",
                zone=zone,
            )

    transaction.on_commit(enqueue)


def unclassify(apps, schema_editor):
    model = apps.get_model("carbon", "CarbonIntensity")
    model.objects.filter(basis="marginal", source__startswith=WATTTIME_SOURCE_PREFIX).update(
        basis="location"
    )


class Migration(migrations.Migration):
    dependencies = [("carbon", "0002_builtin_grid_factors")]

    operations = [
        migrations.AlterField(
            model_name="carbonintensity",
            name="basis",
            field=models.CharField(
                choices=[
                    ("location", "Location-based"),
                    ("market", "Market-based"),
                    ("marginal", "Marginal (timing signals only)"),
                ],
                default="location",
                max_length=8,
            ),
        ),
        migrations.RunPython(reclassify, unclassify),
    ]
