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
    # Quarterly reports: a daily check issues each organization's report of the last complete
    # quarter once REPORT_ISSUE_DELAY_DAYS have passed (once per quarter: an existing report
    # is never issued again). Daily rather than on one date so a beat that was down catches up.
    "reports-issue-due": {
        "task": "reports.issue_due",
        "schedule": crontab(minute=30, hour=6),
        "options": {"expires": 23 * 3600},
    },
    # Late data: a new version of any recently issued report whose measurements changed.
    "reports-reissue-late": {
        "task": "reports.reissue_late",
        "schedule": crontab(minute=45, hour=6),
        "options": {"expires": 23 * 3600},
    },
    # Report e-mails whose task was lost (broker down at issue time, a worker killed).
    "reports-deliveries-sweep": {
        "task": "reports.deliveries_sweep",
        "schedule": crontab(minute=50),
        "options": {"expires": 3300},
    },
    # Live grid intensity (only zones listed in CARBON_PROVIDER_ZONES; a no-op otherwise).
    # At :10, after providers publish the past hour; the lookback window overlaps earlier
    # runs, so a missed run is repaired by the next and a stale copy is useless.
    "carbon-fetch-provider-factors": {
        "task": "carbon.fetch_provider_factors",
        "schedule": crontab(minute=10),
        "options": {"expires": 3300},
    },
}
