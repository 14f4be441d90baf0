# Data migration: rollups built before proration charged a sample that crosses an hour boundary
# wholly to the hour it starts in.

from django.db import migrations
from django.db.models import F
from django.db.models.functions import TruncHour


def mark_crossing_hours(apps, schema_editor):
    """Mark both hours of every sample that crosses an hour boundary dirty, so the next rollup
    sweep rebuilds them prorated. Hours without such a sample were already right and are left
    alone (a full re-rollup of a year would be needless work).

    A sample crosses when its end lies in a later hour than its start and is not that hour's
    first instant (``end`` is exclusive); samples are at most an hour long, so the start's hour
    and the end's hour are the only two it touches.
    """
    EnergySample = apps.get_model("telemetry", "EnergySample")
    DirtyHour = apps.get_model("telemetry", "DirtyHour")
    crossing = (
        EnergySample.objects.annotate(head=TruncHour("start"), tail=TruncHour("end"))
        .filter(tail__gt=F("head"), end__gt=F("tail"))
        .order_by()
    )
    hours = set(crossing.values_list("organization_id", "head").distinct())
    hours |= set(crossing.values_list("organization_id", "tail").distinct())
    DirtyHour.objects.bulk_create(
        (DirtyHour(organization_id=org_id, hour=hour) for org_id, hour in sorted(hours)),
        batch_size=5000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0003_dashboard_summaries_and_jobs"),
        ("telemetry", "0002_raw_tables_without_fk_constraints"),
    ]

    operations = [migrations.RunPython(mark_crossing_hours, migrations.RunPython.noop)]
