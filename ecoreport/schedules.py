"""Every periodic task, in one place. Each entry says why it runs and expires before the next
run, so a beat that was down does not flood the workers with stale copies on restart."""

from celery.schedules import crontab

BEAT_SCHEDULE = {
    # Ingest enqueues a rollup on commit; the sweep catches hours whose enqueue was lost (a
    # broker outage at commit time, a worker killed mid-task).
    "rollup-sweep": {
        "task": "accounting.rollup_dirty_hours",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Policy targets against the hour's rollups. At :05 so the sweep above has rolled up the
    # hour that just ended; a run older than the next one is useless, hence the expiry.
    "policies-evaluate-targets": {
        "task": "policies.evaluate_targets",
        "schedule": crontab(minute=5),
        "options": {"expires": 3300},
    },
}
