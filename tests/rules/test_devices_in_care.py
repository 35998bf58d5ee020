"""Devices in someone's care are not that person's own browsing (issue 20, point 5).

The Valley School's iPad banks are in their class teacher's care: the pupils use them. Their activity is
the device's, with the teacher recorded as `responsible`, never as the `user`, unless a login (the proxy's
authentication) names who used it, which makes it that person's own. A shared device (the hall's AV PC)
has nobody responsible. The register says which a device is (`use`); a register written before `use`
existed still loads, a school iPad in its owner's care.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from collector.observation import Observation, to_table
from ictwatch import settings
from rules.config import ConfigError, DeviceUse
from rules.explain import explain_lines
from tests.conftest import SCHOOL_DAY, run_cli, school_config

LONDON = ZoneInfo("Europe/London")
IPAD_5C, LAPTOP, HALL_PC = "f0:99:bf:10:00:01", "00:1b:21:aa:00:02", "00:1b:21:aa:00:99"
HALL_AV = "  - {id: PC-HALL-AV, type: school_desktop, use: shared, macs: [\"00:1b:21:aa:00:99\"]}\n"


def _request(clock: str, mac: str, host: str, login: str | None = None) -> Observation:
    """A proxied request from a device's MAC at `clock` on 16 June 2026 (local), with the proxy's login if any."""
    ts = dt.datetime.combine(dt.date(2026, 6, 16), dt.time.fromisoformat(clock), LONDON)
    return Observation(int(ts.timestamp() * 1_000_000), "proxy", "squid", f"access.log:{clock}", "10.20.10.150",
                       None, None, 443, "tcp", mac, host=host, method="CONNECT", url=f"{host}:443", proxy_user=login)


def test_the_register_says_whose_use_a_device_is_and_old_registers_keep_loading():
    """devices.yaml says no `use` anywhere: its school iPads are in their owner's care, the rest their own."""
    devices = {d.id: d for d in settings.load(SCHOOL_DAY / "ictwatch.yaml").devices.devices}
    assert "use:" not in (SCHOOL_DAY / "devices.yaml").read_text()
    assert (devices["IPAD-BANK-5C"].use, devices["IPAD-BANK-5C"].responsible, devices["IPAD-BANK-5C"].user) == (
        DeviceUse.care, "jcarter", None)
    assert (devices["LT-JCARTER"].use, devices["LT-JCARTER"].responsible, devices["LT-JCARTER"].user) == (
        DeviceUse.own, None, "jcarter")


def test_a_device_in_care_is_the_devices_activity_unless_a_login_names_someone(tmp_path):
    config = school_config(tmp_path / "school")
    devices = config.parent / "devices.yaml"
    devices.write_text(devices.read_text() + HALL_AV)
    engine = settings.load(config).engine()
    df = engine.evaluate(to_table([
        _request("09:15", IPAD_5C, "www.bbc.co.uk"),  # a pupil on James Carter's class iPads
        _request("09:16", IPAD_5C, "www.bbc.co.uk", login="rbaker"),  # Ruth Baker logged in to the proxy on one
        _request("09:17", LAPTOP, "www.bbc.co.uk"),  # Sam Okafor's own laptop
        _request("09:18", HALL_PC, "www.bbc.co.uk"),  # the hall's AV PC: nobody responsible
    ]))
    got = [(r["device"], r["user"], r["responsible"], r["role"], r["identity_source"])
           for r in df.iter_rows(named=True)]
    assert got == [
        ("IPAD-BANK-5C", None, "jcarter", None, "register_mac"),
        ("IPAD-BANK-5C", "rbaker", None, "teaching_assistant", "proxy_auth"),
        ("LT-SOKAFOR", "sokafor", None, "teacher", "register_mac"),
        ("PC-HALL-AV", None, None, None, "register_mac"),
    ]
    who = explain_lines(engine, df.head(1), {"jcarter": "James Carter"})[1]
    assert who.startswith("  who: no one identified: the device is in the care of James Carter (jcarter), not their "
                          "own use; role none; identity evidence: register_mac")


@pytest.mark.parametrize(("entry", "field", "said"), [
    ("  - {id: PC-HALL-AV, type: school_desktop, use: shared, owner: hmorgan}\n", "devices[14].use",
     "a shared device has nobody responsible"),
    ("  - {id: PC-HALL-AV, type: school_desktop}\n", "devices[14]", "no owner: a device of `use: own` names its owner"),
    ("  - {id: PC-HALL-AV, type: school_desktop, use: pupils, owner: hmorgan}\n", "devices[14].use",
     "'own', 'care' or 'shared'"),
])
def test_a_register_entry_that_does_not_say_who_answers_for_it_is_refused(tmp_path, entry, field, said):
    config = school_config(tmp_path / "school")
    devices = config.parent / "devices.yaml"
    devices.write_text(devices.read_text() + entry)
    with pytest.raises(ConfigError) as err:
        settings.load(config)
    line = len(devices.read_text().splitlines())
    assert str(err.value).startswith(f"{devices}:{line}: {field}: ") and said in str(err.value)
    checked = run_cli("check", "--config", config)
    assert checked.returncode == 2 and f"devices.yaml:{line}: {field}" in checked.stderr
    assert "Traceback" not in checked.stderr
