"""Delivery errors recorded before the SSRF fix carried the socket's text ("Connection refused",
"timed out", the resolver's message), which told an admin which internal ports were open.
Rewrite them to the phrase the transport uses now; HTTP statuses stay."""

from django.db import migrations
from django.db.models import Q


def forwards(apps, schema_editor):
    AlertDelivery = apps.get_model("policies", "AlertDelivery")
    (
        AlertDelivery.objects.filter(channel="webhook")
        .exclude(Q(last_error="") | Q(last_error__startswith="HTTP "))
        .update(last_error="failed: no HTTP answer")
    )


class Migration(migrations.Migration):
    dependencies = [("policies", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
