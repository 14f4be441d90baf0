"""Ingest at the edges (issue 12, "Counting"): overlaps, plausibility, labels, the label budget
and hostile input. Every joule counted once; one odd sample or label never costs a batch."""

from __future__ import annotations

import gzip
import json
import logging
import math
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from ecoreport.fleet.models import Gpu
from ecoreport.organizations.models import Project, Team
from ecoreport.telemetry.models import EnergySample, IngestBatch, LabelBudgetNotice, SampleShare
from ecoreport.telemetry.validation import clean_label, label_display, label_slug
from tests.conftest import BASE_TIME, make_batch, make_sample
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

T = BASE_TIME


def at(seconds: float, length: float = 10.0, **kwargs: Any) -> dict[str, Any]:
    return make_sample(start=T + timedelta(seconds=seconds), seconds=length, **kwargs)


def stored_energy_j() -> float:
    return sum(EnergySample.objects.values_list("energy_j", flat=True))


# --- 1. overlapping intervals ------------------------------------------------------------------


def test_sample_overlapping_a_stored_one_is_rejected_not_counted_twice(agent, post_batch):
    # The issue's probe: [0 s, 10 s) and [5 s, 15 s) of a 700 W GPU.
    assert post_batch(agent.token, make_batch([at(0, energy_j=7000.0)])).json()["accepted"] == 1
    body = post_batch(agent.token, make_batch([at(5, energy_j=7000.0)])).json()
    assert body["accepted"] == 0
    assert body["duplicates"] == 0
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(0, "start")]
    assert "overlaps a stored sample" in body["rejected"][0]["error"]
    assert "2026-11-27T10:00:00Z to 2026-11-27T10:00:10Z" in body["rejected"][0]["error"]
    assert EnergySample.objects.count() == 1
    assert stored_energy_j() == 7000.0


# Each row: a second sample (start, length) against a stored [100 s, 110 s); accepted?
AGAINST_STORED = [
    ("ends where the stored one starts", 90, 10, True),
    ("starts where the stored one ends", 110, 10, True),
    ("overlaps its start", 95, 10, False),
    ("overlaps its end", 105, 10, False),
    ("inside it", 102, 5, False),
    ("around it", 95, 30, False),
    ("same start, longer", 100, 20, False),
    ("same start, shorter", 100, 5, False),
    ("same end, earlier start", 95, 15, False),
]


@pytest.mark.parametrize(
    ("case", "start", "length", "accepted"), AGAINST_STORED, ids=[c[0] for c in AGAINST_STORED]
)
def test_overlap_with_a_stored_interval_is_judged_by_the_interval(
    agent, post_batch, case, start, length, accepted
):
    post_batch(agent.token, make_batch([at(100, energy_j=1000.0)]))
    body = post_batch(agent.token, make_batch([at(start, length, energy_j=1000.0)])).json()
    assert body["accepted"] == int(accepted), body
    assert [r["field"] for r in body["rejected"]] == ([] if accepted else ["start"])
    assert body["duplicates"] == 0
    assert EnergySample.objects.count() == 1 + int(accepted)


def test_exact_duplicate_stays_a_duplicate_while_a_changed_resend_is_an_overlap(agent, post_batch):
    post_batch(agent.token, make_batch([at(0)]))
    same = post_batch(agent.token, make_batch([at(0)])).json()
    assert (same["accepted"], same["duplicates"], same["rejected"]) == (0, 1, [])
    other_energy = post_batch(agent.token, make_batch([at(0, energy_j=2999.0)])).json()
    assert (other_energy["accepted"], other_energy["duplicates"]) == (0, 0)
    assert other_energy["rejected"][0]["field"] == "start"
    assert EnergySample.objects.count() == 1


def test_overlap_within_one_batch_rejects_the_later_sample(agent, post_batch):
    # Listed out of order on purpose: the one that starts first is kept.
    batch = make_batch([at(5), at(20), at(0), at(0), at(25, 2, energy_j=100.0)])
    body = post_batch(agent.token, batch).json()
    assert body["accepted"] == 2  # [0, 10) and [20, 30)
    assert body["duplicates"] == 1  # the second [0, 10)
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(0, "start"), (4, "start")]
    assert "sample 2 of this batch" in body["rejected"][0]["error"]
    assert "sample 1 of this batch" in body["rejected"][1]["error"]
    assert sorted(EnergySample.objects.values_list("duration_s", flat=True)) == [10.0, 10.0]


def test_other_gpus_and_other_organizations_do_not_overlap(cast, agent, make_agent, post_batch):
    post_batch(agent.token, make_batch([at(0, gpu="GPU-0")]))
    body = post_batch(agent.token, make_batch([at(5, gpu="GPU-1")])).json()
    assert body["accepted"] == 1
    theirs = make_agent(cast.other_org, "node-b")
    assert post_batch(theirs.token, make_batch([at(5, gpu="GPU-0")])).json()["accepted"] == 1


def test_overlap_rejection_keeps_shares_and_rollup_conserved(agent, post_batch):
    split = [{"share": 0.5, "team": "nlp"}]
    post_batch(agent.token, make_batch([at(0, attribution=split), at(10, attribution=split)]))
    body = post_batch(
        agent.token, make_batch([at(15, attribution=split), at(10, attribution=split)])
    ).json()
    assert (body["accepted"], body["duplicates"], len(body["rejected"])) == (0, 1, 1)
    assert SampleShare.objects.count() == 4
    assert math.isclose(sum(SampleShare.objects.values_list("energy_j", flat=True)), 6000.0)


# --- 2. plausibility: age, power limit ----------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+23:59",
        "1970-01-01T00:00:00Z",
        "1990-01-01T00:00:00Z",
    ],
)
def test_samples_older_than_the_age_bound_are_rejected_alone(agent, post_batch, start):
    old = make_sample()
    old["start"] = start
    old["end"] = start.replace("T00:00:00", "T00:00:10")
    body = post_batch(agent.token, make_batch([old, at(0)])).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(0, "start")]
    assert "older than samples are accepted" in body["rejected"][0]["error"]


def test_age_bound_is_configurable(agent, post_batch, settings):
    settings.INGEST_MAX_SAMPLE_AGE_DAYS = 1
    recent = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    batch = make_batch([make_sample(start=recent), make_sample(start=recent - timedelta(days=2))])
    body = post_batch(agent.token, batch).json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1]


def test_power_limit_is_the_stored_one_not_an_upgrade_in_the_same_batch(agent, post_batch):
    post_batch(agent.token, make_batch([at(0, energy_j=900.0)], power_limit_w=100.0))
    # 100 W stored; the next batch declares 700 W and claims 650 W for 10 s.
    body = post_batch(
        agent.token, make_batch([at(10, energy_j=6500.0)], power_limit_w=700.0)
    ).json()
    assert body["accepted"] == 0
    assert body["rejected"][0]["field"] == "energy_j"
    assert "at 110 W" in body["rejected"][0]["error"]  # 100 W x the 1.10 margin
    # The declared limit is stored for the batches that follow.
    assert Gpu.objects.get().power_limit_w == 700.0
    later = post_batch(agent.token, make_batch([at(20, energy_j=6500.0)], gpus=[])).json()
    assert later["accepted"] == 1


def test_gpu_seen_for_the_first_time_uses_its_declared_limit(agent, post_batch):
    body = post_batch(agent.token, make_batch([at(0, energy_j=900.0)], power_limit_w=80.0)).json()
    assert body["rejected"][0]["field"] == "energy_j"  # 90 W average, above 80 W x 1.10


def test_contradictory_inventory_is_refused_whole(agent, post_batch):
    batch = make_batch([at(0, energy_j=6500.0)])
    gpu = batch["gpus"][0]
    batch["gpus"] = [{**gpu, "power_limit_w": 100.0}, {**gpu, "power_limit_w": 700.0}]
    response = post_batch(agent.token, batch)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed"
    assert (
        "gpus[1] lists GPU 'GPU-0' again with different values"
        in (response.json()["error"]["message"])
    )
    assert not Gpu.objects.exists()
    assert not IngestBatch.objects.exists()


def test_repeated_identical_inventory_entry_is_fine(agent, post_batch):
    batch = make_batch([at(0)])
    batch["gpus"] = batch["gpus"] * 2
    assert post_batch(agent.token, batch).json()["accepted"] == 1


# --- 3. labels ---------------------------------------------------------------------------------

# Each row: labels as sent; the team names they must become (distinct, none dropped).
DISTINCT_LABELS = [
    ("japanese", ["研究チーム"], ["研究チーム"]),
    ("accents differ", ["Équipe", "Èquipe", "equipe"], ["Équipe", "Èquipe", "equipe"]),
    ("punctuation only", ["!!!", "???"], ["!!!", "???"]),
    ("long labels that differ at the end", ["x" * 70 + "a", "x" * 70 + "b"], None),
]


@pytest.mark.parametrize(
    ("case", "labels", "names"), DISTINCT_LABELS, ids=[c[0] for c in DISTINCT_LABELS]
)
def test_distinct_labels_are_kept_distinct_and_displayable(
    agent, post_batch, cast, case, labels, names
):
    attribution = [{"share": 0.2, "team": label, "project": label} for label in labels]
    body = post_batch(agent.token, make_batch([at(0, attribution=attribution)])).json()
    assert body["accepted"] == 1
    teams = Team.objects.filter(organization=cast.org)
    assert teams.count() == len(labels)
    assert Project.objects.filter(organization=cast.org).count() == len(labels)
    assert sorted(t.name for t in teams) == sorted(names or labels)
    # Every share landed on its own team: nothing unattributed but the remainder.
    attributed = SampleShare.objects.filter(attributed=True)
    assert attributed.filter(team__isnull=True).count() == 0
    assert attributed.values("team").distinct().count() == len(labels)
    for team in teams:
        team.full_clean()  # a valid slug, within the column lengths


def test_plain_labels_keep_their_readable_slugs():
    assert label_slug("NLP Research") == "nlp-research"
    assert label_slug("llm-pretrain") == "llm-pretrain"
    assert label_slug("Équipe") != label_slug("Èquipe")
    assert label_slug("Équipe") == label_slug("équipe")  # case, as for plain labels
    assert label_slug("Équipe").startswith("equipe-")


CLEANED = [
    ("zero-width space kept", "nlp\u200b", "nlp\u200b"),
    ("NUL byte", "a\x00b", "ab"),
    ("tab and newline", "big\tdata\nteam", "big data team"),
    ("lone surrogate", "\ud800vision", "vision"),
    ("decomposed accent", "E\u0301quipe", "Équipe"),
    ("bidi override kept", "\u202eabc", "\u202eabc"),
    ("only invisible", "\u200b\x00 ", None),
    ("too long", "y" * 300, "y" * 200),
]


@pytest.mark.parametrize(("case", "raw", "cleaned"), CLEANED, ids=[c[0] for c in CLEANED])
def test_labels_are_cleaned_to_what_can_be_stored_and_shown(case, raw, cleaned):
    assert clean_label(raw) == cleaned


# Each row: a cleaned label, the name its team or project is shown under.
DISPLAYED = [
    ("plain", "NLP Research", "NLP Research"),
    ("other scripts as they are", "研究チーム", "研究チーム"),
    ("accents as they are", "Èquipe", "Èquipe"),
    ("zero-width space by code point", "nlp\u200b", "nlp\u27e8U+200B\u27e9"),
    ("bidi override by code point", "\u202eabc", "\u27e8U+202E\u27e9abc"),
    ("private use by code point", "x\ue000", "x\u27e8U+E000\u27e9"),
    ("variation selector by code point", "nlp\ufe0f", "nlp\u27e8U+FE0F\u27e9"),
    ("the notation itself", "nlp\u27e8U+200B\u27e9", "nlp\u27e8U+27E8\u27e9U+200B\u27e9"),
    ("cut to the name column", "é" + "\u200b" * 199, "é" + "\u27e8U+200B\u27e9" * 24 + "\u2026"),
]


@pytest.mark.parametrize(("case", "label", "shown"), DISPLAYED, ids=[c[0] for c in DISPLAYED])
def test_labels_are_shown_with_invisible_characters_visible(case, label, shown):
    assert label_display(label) == shown
    assert len(shown) <= 200


def test_agent_cleans_labels_as_the_backend_does():
    # Both sides must be one function of the input, or an agent's label and the backend's
    # re-cleaning of it would name two teams. Each default-ignorable range at its ends, beside
    # the cases above.
    from ecoreport_agent.attribution import clean_label as agent_clean_label

    ends = "\u00ad\u034f\u061c\u115f\u1160\u17b4\u180b\u180f\u200b\u200f\u202a\u202e\u2060\u206f"
    ends += "\u3164\ufe00\ufe0f\ufeff\uffa0\ufff0\ufff8\U0001bca0\U0001d17a\U000e0000\U000e0fff"
    samples = [raw for _, raw, _ in CLEANED] + [
        x for _, labels, _ in DISTINCT_LABELS for x in labels
    ]
    samples += [f"a{ch}" for ch in ends] + list(ends) + [ends, "\u2800", "\u0600x", "\U000e0fffz"]
    for raw in samples:
        assert agent_clean_label(raw) == clean_label(raw), repr(raw)
    assert all(clean_label(ch) is None for ch in ends)
    assert all(clean_label(f"a{ch}") == f"a{ch}" for ch in ends)


@pytest.mark.parametrize(
    "label",
    ["t" * 257, "a\x00b", "\ud800", "x\u200by", "\x1b[31mred"],
    ids=["257 characters", "NUL", "lone surrogate", "zero-width", "escape sequence"],
)
def test_odd_label_never_loses_the_batch(agent, post_batch, label):
    odd = [{"share": 0.5, "team": label, "project": label, "user": label, "job_id": label}]
    raw = json.dumps(make_batch([at(0, attribution=odd), at(10)]), ensure_ascii=True).encode()
    response = post_batch(agent.token, None, raw=raw)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, [])
    assert {w["field"] for w in body["warnings"]} == {
        "attribution[0].team",
        "attribution[0].project",
    }
    share = SampleShare.objects.get(attributed=True)
    assert "\x00" not in share.user and len(share.job_id) <= 128
    assert math.isclose(sum(SampleShare.objects.values_list("energy_j", flat=True)), 6000.0)


def test_zero_width_variant_is_a_team_of_its_own_shown_visibly(agent, post_batch, cast):
    # Issue 12: "nlp" + U+200B is kept distinct from "nlp", and shown so that the two teams do
    # not look identical on a page.
    attribution = [{"share": 0.5, "team": "nlp"}, {"share": 0.5, "team": "nlp\u200b"}]
    body = post_batch(agent.token, make_batch([at(0, attribution=attribution)])).json()
    teams = Team.objects.filter(organization=cast.org)
    assert sorted(teams.values_list("name", flat=True)) == ["nlp", "nlp\u27e8U+200B\u27e9"]
    assert teams.get(name="nlp").slug == "nlp"
    assert teams.get(name="nlp\u27e8U+200B\u27e9").slug == label_slug("nlp\u200b") != "nlp"
    assert SampleShare.objects.filter(attributed=True).values("team").distinct().count() == 2
    assert body["warnings"] == [
        {
            "index": 0,
            "field": "attribution[1].team",
            "warning": "label shown as 'nlp\u27e8U+200B\u27e9' (invisible characters kept, "
            "shown by code point)",
        }
    ]


# --- 4. label budget ---------------------------------------------------------------------------


@pytest.fixture
def admin_email(cast):
    cast.owner.user.email = "olivia@acme.example"
    cast.owner.user.save()
    cast.member.user.email = "mo@acme.example"
    cast.member.user.save()
    return "olivia@acme.example"


def test_new_labels_beyond_the_batch_budget_are_stored_unattributed(
    agent, post_batch, cast, settings, admin_email, caplog
):
    settings.INGEST_MAX_NEW_LABELS_PER_BATCH = 3
    attribution = [{"share": 0.1, "team": f"team-{n}", "project": "p"} for n in range(10)]
    with caplog.at_level(logging.WARNING, logger="ecoreport.telemetry.services"):
        body = post_batch(agent.token, make_batch([at(0, attribution=attribution)])).json()
    assert body["accepted"] == 1
    assert sorted(Team.objects.filter(organization=cast.org).values_list("slug", flat=True)) == [
        "team-0",
        "team-1",
        "team-2",
    ]
    refused = [w for w in body["warnings"] if "not registered" in w["warning"]]
    assert [w["field"] for w in refused] == [f"attribution[{n}].team" for n in range(3, 10)]
    assert all(w["index"] == 0 for w in refused)
    assert "'team-3' not registered" in refused[0]["warning"]
    # Energy is conserved: the refused labels' shares are stored, with no team.
    shares = SampleShare.objects.all()
    assert math.isclose(sum(s.energy_j for s in shares), 3000.0)
    assert shares.filter(attributed=True, team__isnull=True).count() == 7
    assert shares.filter(attributed=True, project__isnull=False).count() == 10
    # The admins are told once: a log line and one e-mail to the admins and owners.
    assert "ingest.label_budget_exhausted org=acme" in caplog.text
    assert [m.to for m in mail.outbox] == [[admin_email]]
    assert "team-3" in mail.outbox[0].body
    notice = LabelBudgetNotice.objects.get(organization=cast.org)
    assert (notice.refused, notice.first_label, notice.notified_at is not None) == (
        7,
        "team-3",
        True,
    )


def test_day_budget_spans_batches_and_admins_are_mailed_once_a_day(
    agent, post_batch, cast, settings, admin_email
):
    settings.INGEST_MAX_NEW_LABELS_PER_DAY = 5
    for n in range(4):
        attribution = [{"share": 0.5, "project": f"p{n}-{k}"} for k in range(2)]
        post_batch(agent.token, make_batch([at(10 * n, attribution=attribution)]))
    assert Project.objects.filter(organization=cast.org).count() == 5
    assert len(mail.outbox) == 1
    assert LabelBudgetNotice.objects.get().refused == 3
    # Known labels are never refused, whatever the budget.
    again = [{"share": 0.5, "project": "p0-0"}]
    body = post_batch(agent.token, make_batch([at(100, attribution=again)])).json()
    assert "warnings" not in body
    assert SampleShare.objects.filter(project__slug="p0-0").count() == 2


def test_the_issue_probe_of_twenty_thousand_labels_registers_at_most_the_budget(
    agent, post_batch, cast
):
    attribution = [{"share": 0.00005, "team": f"t{n}", "project": f"p{n}"} for n in range(20_000)]
    body = post_batch(agent.token, make_batch([at(0, attribution=attribution)])).json()
    assert body["accepted"] == 1
    assert Team.objects.filter(organization=cast.org).count() == 100
    assert Project.objects.filter(organization=cast.org).count() == 100
    assert len(body["warnings"]) == 100
    assert body["warnings"][-1]["warning"].endswith("more labels were cleaned or not registered")


class RefusingMailBackend(BaseEmailBackend):
    """An SMTP server that is down: what smtplib raises (an OSError) on every send."""

    def send_messages(self, email_messages):
        raise ConnectionRefusedError(111, "Connection refused")


def test_admins_are_told_later_when_the_mail_server_was_down(
    agent, post_batch, cast, settings, admin_email
):
    settings.INGEST_MAX_NEW_LABELS_PER_BATCH = 0
    settings.EMAIL_BACKEND = f"{__name__}.RefusingMailBackend"
    post_batch(agent.token, make_batch([at(0, attribution=[{"share": 0.5, "team": "a"}])]))
    notice = LabelBudgetNotice.objects.get()
    assert notice.notified_at is None  # not claimed: the e-mail did not go out
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    post_batch(agent.token, make_batch([at(10, attribution=[{"share": 0.5, "team": "b"}])]))
    post_batch(agent.token, make_batch([at(20, attribution=[{"share": 0.5, "team": "c"}])]))
    assert [m.to for m in mail.outbox] == [[admin_email]]
    notice.refresh_from_db()
    assert (notice.refused, notice.notified_at is not None) == (3, True)


def test_budget_does_not_count_teams_people_created(agent, post_batch, cast, settings):
    settings.INGEST_MAX_NEW_LABELS_PER_DAY = 1
    TeamFactory(organization=cast.org, slug="ops", name="Ops")
    attribution = [{"share": 0.5, "team": "ops"}, {"share": 0.5, "team": "new"}]
    body = post_batch(agent.token, make_batch([at(0, attribution=attribution)])).json()
    assert "warnings" not in body
    assert Team.objects.filter(organization=cast.org).count() == 2


# --- 7. hostile input on ingest: a clear 4xx, never a 500 ---------------------------------------


def _with(transform) -> bytes:
    batch = make_batch([make_sample()])
    return transform(batch)


def _deep(batch: dict[str, Any]) -> bytes:
    raw = json.dumps(batch)
    return raw.replace('"samples"', '"extra": ' + "[" * 1000 + "]" * 1000 + ', "samples"').encode()


def _deep_agent(batch: dict[str, Any]) -> bytes:
    return (
        json.dumps(batch)
        .replace('{"hostname"', "[" * 1000 + "]" * 1000 + ', "x": {"hostname"')
        .encode()
    )


def _set(path: list[Any], value: Any):
    def change(batch: dict[str, Any]) -> bytes:
        node = batch
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(batch).encode()

    return change


def _bomb(batch: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(batch).encode() + b" " * (40 * 1024 * 1024))


# Each row: case, body, gzip-labelled?, status, error code (for a 200: what the sample gets).
HOSTILE = [
    ("JSON nested 1,000 deep in an ignored field", _deep, False, 400, "malformed"),
    ("JSON nested 1,000 deep in place of an object", _deep_agent, False, 400, "malformed"),
    (
        "lone surrogate in the hostname",
        _set(["agent", "hostname"], "\ud800"),
        False,
        400,
        "malformed",
    ),
    ("NUL byte in the hostname", _set(["agent", "hostname"], "node\x00"), False, 400, "malformed"),
    ("NUL byte in the agent version", _set(["agent", "version"], "1\x00"), False, 400, "malformed"),
    ("NUL byte in a GPU uuid", _set(["gpus", 0, "uuid"], "GPU-\x00"), False, 400, "malformed"),
    ("newline in a GPU name", _set(["gpus", 0, "name"], "H100\n"), False, 400, "malformed"),
    (
        "invalid UTF-8",
        lambda b: json.dumps(b).encode().replace(b"gpu-node-01", b"\xff\xfe"),
        False,
        400,
        "malformed",
    ),
    (
        "offset of +24:00",
        _set(["samples", 0, "start"], "2026-11-27T10:00:00+24:00"),
        False,
        400,
        "malformed",
    ),
    ("year 0", _set(["samples", 0, "start"], "0000-01-01T00:00:00Z"), False, 400, "malformed"),
    ("gzip bomb", _bomb, True, 413, "too_large"),
    (
        "GPU memory beyond a database integer",
        _set(["gpus", 0, "memory_total_mib"], 2**40),
        False,
        400,
        "malformed",
    ),
    # Per-sample cases: the batch is answered 200, the sample judged alone (what it must get).
    (
        "NUL byte in a sample's GPU uuid",
        _set(["samples", 0, "gpu_uuid"], "GPU-0\x00"),
        False,
        200,
        "rejected gpu_uuid",
    ),
    (
        "lone surrogate in a label",
        _set(["samples", 0, "attribution"], [{"share": 1, "team": "\ud800"}]),
        False,
        200,
        "warning",
    ),
    (
        "end at 9999-12-31 -23:59",
        _set(["samples", 0, "end"], "9999-12-31T23:59:59-23:59"),
        False,
        200,
        "rejected end",
    ),
    (
        "start at 0001-01-01 +23:59",
        _set(["samples", 0, "start"], "0001-01-01T00:00:00+23:59"),
        False,
        200,
        "rejected start",
    ),
    (
        "start before 1970",
        _set(["samples", 0, "start"], "1969-12-31T23:59:59Z"),
        False,
        200,
        "rejected start",
    ),
]


@pytest.mark.parametrize(
    ("case", "build", "gzipped", "status", "code"), HOSTILE, ids=[c[0] for c in HOSTILE]
)
def test_hostile_input_gets_a_clear_answer_never_a_500(
    agent, post_batch, client, case, build, gzipped, status, code
):
    raw = _with(build)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {agent.token}"}
    if gzipped:
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    response = client.post("/api/v1/ingest", data=raw, content_type="application/json", **headers)
    assert response.status_code == status, response.content[:300]
    body = response.json()
    if status != 200:
        assert body["error"]["code"] == code
        assert body["error"]["message"]
        assert not IngestBatch.objects.exists()
    elif code == "warning":
        assert (body["accepted"], body["rejected"]) == (1, [])
        assert body["warnings"][0]["field"] == "attribution[0].team"
    else:
        assert body["accepted"] == 0
        assert [r["field"] for r in body["rejected"]] == [code.split()[1]]
    names = [
        *Team.objects.values_list("name", flat=True),
        *Gpu.objects.values_list("uuid", flat=True),
    ]
    assert not [n for n in names if "\x00" in n or "\ud800" in n]


def test_offset_of_23_59_is_stored_as_the_utc_instant(agent, post_batch):
    sample = make_sample()
    sample["start"] = "2026-11-28T09:59:00+23:59"  # 2026-11-27T10:00:00Z
    sample["end"] = "2026-11-28T09:59:10+23:59"
    body = post_batch(agent.token, make_batch([sample])).json()
    assert body["accepted"] == 1, body
    assert EnergySample.objects.get().start == BASE_TIME


def test_openapi_schema_documents_the_warnings_of_the_answer():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    answer = schema["components"]["schemas"]["IngestAnswer"]
    assert "warnings" in answer["properties"]
    assert "warnings" not in answer["required"]  # present only when there is something to say
    warning = schema["components"]["schemas"]["IngestWarning"]
    assert set(warning["properties"]) == {"index", "field", "warning"}
