"""Built-in annual location-based factors (ecoreport/carbon/data/grid-intensity.csv, with their
sources). WORLD is the last fallback of the resolver. Idempotent; reversing removes only rows
that are still exactly the shipped ones."""

from django.db import migrations


def load(apps, schema_editor):
    from ecoreport.carbon.factors import builtin_factors_load

    builtin_factors_load(model=apps.get_model("carbon", "CarbonIntensity"))


def unload(apps, schema_editor):
    import csv

    from ecoreport.carbon.factors import BUILTIN_DEFAULTS

    model = apps.get_model("carbon", "CarbonIntensity")
    with BUILTIN_DEFAULTS.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            model.objects.filter(
                organization=None, zone=rec["zone"], resolution="year", basis="location",
                source=rec["source"], intensity_g_per_kwh=float(rec["g_co2e_per_kwh"]),
            ).delete()


class Migration(migrations.Migration):
    dependencies = [("carbon", "0001_initial")]
    operations = [migrations.RunPython(load, unload)]
