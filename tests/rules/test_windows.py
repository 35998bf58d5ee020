"""Rules over a window (a rule's `total`): the policy form and its errors, and the totals carried across
batches, processes and re-imports through the real pipeline and store.

The pipeline tests use the shipped policy with its upload threshold brought down from 50 MB to 50 kB, so
that each upload is a small capture: Tom Evans's office PC sends 17,000 bytes to WeTransfer at 09:00, 10:00
and 11:30 on Monday 26 October 2026 (GMT), one capture each. A flow's `bytes_out` counts whole IP packets
from the client (collector/packet/flows.py): SYN 40, the handshake's ACK 40, the ClientHello 142 + 40, the
ACK of the server's hello 40, the 17,000-byte record + 40, FIN 40 and the last ACK 40: 17,422 bytes. So the
day's running total is 17,422, then 34,844, then 52,266, over 50,000 with the third.
"""

from __future__ import annotations

import polars as pl
import pytest

from collector.naming import name_flows
from collector.observation import to_table
from collector.sources import open_source
from fixtures.make_school_day import Writer
from fixtures.make_school_week import MON, PC_OFFICE_1, event
from ictwatch import settings
from rules.config import load_model
from rules.policy import Policy, never_filled
from storage.records import record_ids
from tests.conftest import policy_refused, run_cli, school_config, stored_activity, stored_breaches

UPLOAD = 17_422
"""bytes_out of one test upload's flow, worked out by hand above."""

POLICY = """\
school: Test School
calendar:
  terms: [{start: 2026-09-01, end: 2026-12-18}]
categories: {lists: categories}
rules:
  - id: the-rule
    clauses: [P6]
    severity: caution
    message: a test
    when: {kind: [flow]}
"""  # a `total` starts on line 11


@pytest.mark.parametrize(("total", "message"), [
    ("total: {amount: bytes_up, over: 50 parsecs}", "policy.yaml:11: rules[0].total.over: '50 parsecs': give a "
     "number and a unit, bytes (B, kB, MB, GB, MiB, GiB) or time (seconds, minutes, hours)"),
    ("total:\n      amount: time\n      over: 50 MB",
     "policy.yaml:13: rules[0].total.over: '50 MB': amount time needs a time (15 minutes)"),
    ("total: {amount: bytes_up, over: 15 minutes}",
     "policy.yaml:11: rules[0].total.over: '15 minutes': amount bytes_up needs a size (50 MB)"),
    ("total:\n      amount: bytes\n      over: 1 GB\n      window: 7 minutes",
     "policy.yaml:14: rules[0].total.window: '7 minutes': hour, day, school_day, or a whole number of minutes "
     "that divides a day (30 minutes, 2 hours)"),
    ("total: {amount: time, over: 15 minutes, per: [person, person]}",
     "policy.yaml:11: rules[0].total.per: ['person', 'person']: a name given twice"),
    ("total: {amount: bytes_in, over: 1 GB}", "policy.yaml:11: rules[0].total.amount: 'bytes_in': Input should be "
     "'bytes_down', 'bytes_up', 'bytes' or 'time'"),
    ("total: {amount: time, over: 15 minutes, per: [room]}",
     "policy.yaml:11: rules[0].total.per[0]: 'room': Input should be 'person' or 'site'"),
])
def test_a_bad_total_names_file_line_field_and_value(tmp_path, total, message):
    assert policy_refused(tmp_path / "policy.yaml", POLICY + f"    {total}\n") == f"{tmp_path}/{message}"


def test_a_byte_total_over_kinds_without_bytes_is_warned_about(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace("{kind: [flow]}", "{kind: [dns, tls]}") + "    total: {amount: bytes, over: 1 GB}\n")
    assert never_filled(load_model(path, Policy), path) == [
        f"{path}:11: rule the-rule: amount bytes is counted only from kinds flow, proxy, and the rule names dns, tls, "
        "so its total stays 0"]
    path.write_text(POLICY + "    total: {amount: time, over: 15 minutes}\n")
    assert never_filled(load_model(path, Policy), path) == []


def test_check_refuses_a_bad_total_with_exit_2(tmp_path):
    config = school_config(tmp_path / "school")
    policy = config.parent / "policy.yaml"
    policy.write_text(policy.read_text().replace("over: 50 MB", "over: 50 megs"))
    proc = run_cli("check", "--config", config)
    lines = policy.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "over: 50 megs" in text)
    rules = next(i for i, text in enumerate(lines) if text == "rules:")
    index = sum(text.startswith("  - id: ") for text in lines[rules:line]) - 1  # the rule the bad line is in
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ictwatch: config error: {policy}:{line}: rules[{index}].total.over: '50 megs': give a number and a unit, "
        "bytes (B, kB, MB, GB, MiB, GiB) or time (seconds, minutes, hours)"]


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """The school's configuration with the upload threshold at 50 kB, and one capture per upload."""
    tmp = tmp_path_factory.mktemp("uploads")
    config = school_config(tmp / "school")
    policy = config.parent / "policy.yaml"
    policy.write_text(policy.read_text().replace("over: 50 MB", "over: 50 kB"))
    captures = {}
    for n, local in enumerate(("09:00:00", "10:00:00", "11:30:00")):
        w = Writer(tmp / f"upload-{local[:2]}.pcap", seed=n)
        event(w, MON, local, PC_OFFICE_1, "10.20.2.21", "upload", "www.wetransfer.com", "104.18.10.6", 443, 17_000)
        w.out.close()
        captures[local[:5]] = w.out.filename
    return config, captures


def _breaches(config, store) -> list[tuple[str, str, str]]:
    return [(r["time"], r["rule"], r["host"]) for r in stored_breaches(config, store)]


def _flow_ref(store, hour: str) -> str:
    flows = stored_activity(store).filter(kind="flow", host="www.wetransfer.com")
    return next(r["source_ref"] for r in flows.to_dicts() if r["ts"].strftime("%H:%M") == hour)


def test_a_window_breaks_once_across_restarts_and_reimports(uploads, tmp_path):
    """Two uploads in one run (34,844 bytes, under), the third in a second process (a restart: the first
    two are read back from the store): one breach, on the third. The three again (a re-import) add
    nothing: the breach stays on the third and no second one appears."""
    config, captures = uploads
    store = tmp_path / "store"
    run_cli("replay", "--config", config, captures["09:00"], captures["10:00"], store=store, check=True)
    assert _breaches(config, store) == []
    run_cli("replay", "--config", config, captures["11:30"], store=store, check=True)
    expected = [("2026-10-26 11:30:00", "file-sharing-uploads-day", "www.wetransfer.com")]
    assert _breaches(config, store) == expected
    again = run_cli("replay", "--config", config, *captures.values(), store=store, check=True)
    assert _breaches(config, store) == expected
    assert "stored 0 activities (" in again.stdout and "judged anew" not in again.stdout  # the breach row too

    said = run_cli("explain", "--config", config, _flow_ref(store, "11:30"), "--kind", "flow", store=store,
                   check=True).stdout
    assert "Rule file-sharing-uploads-day (P6, caution): matched" in said
    assert ("Total: more than 50 kB sent per person in a day; the window 2026-10-26 (local) comes to 52,266 bytes "
            "(52.3 kB), over, from these 3 records:") in said
    listed = [line.strip() for line in said.splitlines() if "www.wetransfer.com (upload-" in line]
    assert [line.split(": ", 1)[1] for line in listed] == [
        "17,422 bytes (17.4 kB), running total 17,422 bytes (17.4 kB)",
        "17,422 bytes (17.4 kB), running total 34,844 bytes (34.8 kB)",
        "17,422 bytes (17.4 kB), running total 52,266 bytes (52.3 kB)  <- this record, whose arrival took the total "
        "over"]
    assert [line[:25] for line in listed] == ["2026-10-26 09:00:00 flow ", "2026-10-26 10:00:00 flow ",
                                              "2026-10-26 11:30:00 flow "]


def test_a_late_record_that_takes_the_window_over_carries_the_breach(uploads, tmp_path):
    """The 11:30 upload is read first, then 09:00, then 10:00 (a log read late): in time order the total
    goes over at 11:30, but that record was judged under the threshold; the 10:00 one, whose arrival takes
    the window over, carries the breach, and its explanation says where the total went over."""
    config, captures = uploads
    store = tmp_path / "store"
    for hour in ("11:30", "09:00", "10:00"):
        run_cli("replay", "--config", config, captures[hour], store=store, check=True)
    assert _breaches(config, store) == [("2026-10-26 10:00:00", "file-sharing-uploads-day", "www.wetransfer.com")]
    said = run_cli("explain", "--config", config, _flow_ref(store, "10:00"), "--kind", "flow", store=store,
                   check=True).stdout
    listed = [line.strip() for line in said.splitlines() if "www.wetransfer.com (upload-" in line]
    assert listed[1].endswith("running total 34,844 bytes (34.8 kB)  <- this record, whose arrival took the total over")
    assert listed[2].endswith("running total 52,266 bytes (52.3 kB)  <- the total went over here, in time order")


def _judged_batch(engine, capture, names):
    """One capture as the pipeline judges it: its flows named from its DNS answers, its record ids made."""
    observations = []
    open_source(capture).run(observations.append)
    df = pl.from_arrow(to_table(observations))
    df = name_flows(df, names)
    return engine.evaluate(df.with_columns(record_ids(df)))


def test_a_reloaded_engine_goes_on_with_the_totals(uploads):
    """The daemon's reload (SIGHUP) swaps the engine between batches: the new one takes over the counted
    uploads, so the third breaks the rule; an engine that had not seen the first two (and has no store to
    read them back from) finds 17,422 bytes, under."""
    config, captures = uploads
    loaded = settings.load(config)
    first, names = loaded.engine(), {}
    for hour in ("09:00", "10:00"):
        assert _judged_batch(first, captures[hour], names).filter(verdict="breach").height == 0
    fresh = loaded.engine()
    fresh.windows.take_over(first.windows)
    third = _judged_batch(fresh, captures["11:30"], names).filter(verdict="breach")
    assert third.select("kind", "host", "rule_ids").rows() == [("flow", "www.wetransfer.com",
                                                                  ["file-sharing-uploads-day"])]
    alone = _judged_batch(loaded.engine(), captures["11:30"], {})
    assert alone.filter(verdict="breach").height == 0
