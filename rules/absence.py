"""Clause I1: a school iPad that has not been on the network by the set time on a school day.

An absence cannot be seen in any one packet, so it is checked once a day: `absences` lists the issued
school iPads that the store has not seen since local midnight by `ipads.expected_by`, each as an
`absence` observation at that time carrying one of the device's MACs. The engine then judges it like
any other observation: identity finds the device and its owner from the MAC, and a rule of the policy
over `kind: absence` (the demo's `ipad-not-seen`) makes it a breach.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from collector.observation import Observation
from rules.config import Device, DeviceType
from rules.policy import Policy


def deadline(policy: Policy, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
    """(local midnight, the expected-by time) of `day` as UTC instants; None when there is no check that
    day (no `ipads` section, or not a school day)."""
    if policy.ipads is None or not policy.calendar.is_school_day(day):
        return None
    zone = zoneinfo.ZoneInfo(policy.calendar.timezone)
    start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
    return start, dt.datetime.combine(day, policy.ipads.expected_by, zone).astimezone(dt.UTC)


def expected(devices: tuple[Device, ...], day: dt.date) -> list[Device]:
    """The school iPads that should be in school on `day`: issued then (not lost or returned by then)."""
    out = []
    for d in devices:
        retired = d.status != "issued" and (d.status_since is None or d.status_since <= day)
        if d.type == DeviceType.school_ipad and not retired and d.macs:
            out.append(d)
    return out


def absences(devices: list[Device], seen: set[str], by: dt.datetime, day: dt.date) -> list[Observation]:
    """One `absence` observation, at `by`, for each device not in `seen` (device ids)."""
    return [Observation(int(by.timestamp() * 1_000_000), "absence", "check", f"ipad-check:{day}:{d.id}",
                        src_mac=d.macs[0], service="ipad-check") for d in devices if d.id not in seen]
