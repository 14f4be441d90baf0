"""Energy used while the agent was not measuring (agent down, GPU lost): the counter's advance.

The spool keeps each GPU's last booked counter reading with the boot it was taken in; when the
GPU is attached again, its advance since then is booked, unattributed, if it is provably the
same counter.
"""

from __future__ import annotations

import logging

from ecoreport_agent.clock import ms
from ecoreport_agent.gpu import COUNTER
from ecoreport_agent.samples import make_sample, split_interval
from ecoreport_agent.spool import Reading, SpoolSample

# The agent's log channel, whichever of its modules the measurement loop is in.
log = logging.getLogger("ecoreport_agent.agent")


def read_boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    """Changes at every boot; a persisted counter reading from another boot is meaningless."""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


def resume_samples(
    previous: Reading, counter_mj: int | None, method: str, now_mono: float, boot_id: str
) -> tuple[list[SpoolSample], float] | None:
    """Book the counter's advance since the last booked reading (agent down, GPU lost).

    Only when it is provably the same counter: same boot, counter not gone backwards. The
    advance is then exactly the energy the GPU used meanwhile, and nobody can say who used
    it, so it goes out unattributed. A driver reload during the downtime that was followed
    by more than the old value's worth of energy looks like a smaller advance: the agent
    under-counts in that case, never over-counts.
    """
    if method != COUNTER or counter_mj is None or previous.counter_mj is None:
        log.info("resume.not_possible uuid=%s reason=no_counter", previous.gpu_uuid)
        return None
    if previous.boot_id != boot_id:
        log.warning(
            "resume.unknown uuid=%s reason=reboot: energy since the last reading before the"
            " reboot cannot be known",
            previous.gpu_uuid,
        )
        return None
    if counter_mj < previous.counter_mj:
        log.warning(
            "resume.unknown uuid=%s reason=counter_reset previous_mj=%d now_mj=%d: the driver"
            " was reloaded; energy since the last reading cannot be known",
            previous.gpu_uuid,
            previous.counter_mj,
            counter_mj,
        )
        return None
    duration = now_mono - previous.mono_s
    end_wall = ms(previous.wall_s + duration)
    if end_wall <= previous.wall_s:
        return None
    energy_mj = counter_mj - previous.counter_mj
    samples = [
        make_sample(previous.gpu_uuid, COUNTER, s, e, mj, c0, c1, {}, [])
        for s, e, mj, c0, c1 in split_interval(
            previous.wall_s, end_wall, energy_mj, previous.counter_mj
        )
    ]
    log.info(
        "resume.booked uuid=%s seconds=%.1f energy_j=%.3f samples=%d",
        previous.gpu_uuid,
        duration,
        energy_mj / 1000,
        len(samples),
    )
    return samples, end_wall
