"""Text off the network, out of the web form or out of an exported register reaches the network manager's
terminal only escaped: every command that prints such text writes its control characters as `\\xNN` (and
Unicode's line separators and bidirectional controls as `\\uNNNN`), so an ESC sequence cannot clear the
screen or retitle the window, a newline cannot split a table row, and a right-to-left override cannot
reorder a line. JSON output stays exact JSON.

The hostile records: a TLS hello whose server name carries an xterm title sequence, a screen clear and a
newline (from Sam Okafor's phone, a breach of P18 like the school day's 09:42 visit); a Squid line whose
CONNECT host starts with a right-to-left override and a colour sequence (James Carter's refused bet365, a
P8 breach); a report reason and a mistyped subject carrying all three; an iPad in the register whose asset
tag carries all three. Real `ictwatch` subprocesses on a real embedded store.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import run_cli, school_config

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: what follows it is shown reversed
TLS_NAME = "\x1b]0;pwned\x07\x1b[2J\nwww.instagram.com"
TLS_SHOWN = "\\x1b]0;pwned\\x07\\x1b[2j\\x0awww.instagram.com"  # names are lower-cased, as DNS compares them
PROXY_HOST = f"{RLO}\x1b[31mwww.bet365.com"
PROXY_SHOWN = "\\u202e\\x1b[31mwww.bet365.com"
HOSTILE = f"\x1b]0;owned\x07\x1b[2Jline one\nline two {RLO}evil"
HOSTILE_SHOWN = "\\x1b]0;owned\\x07\\x1b[2Jline one\\x0aline two \\u202eevil"
IPAD = f"IPAD-\x1b[2J\n{RLO}X"
IPAD_SHOWN = "IPAD-\\x1b[2J\\x0a\\u202eX"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What must never reach the terminal raw (a newline only between the lines the command means)."""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """(config, store, folder): the school day's configuration with the hostile iPad in its register, and a
    store holding the hostile TLS hello and Squid line."""
    from fixtures.make_school_day import Writer, session

    folder = tmp_path_factory.mktemp("hostile")
    config = school_config(folder / "school")
    devices = config.parent / "devices.yaml"
    devices.write_text(devices.read_text() + '  - {id: "IPAD-\\e[2J\\n\\u202eX", type: school_ipad, owner: jcarter, '
                       'macs: ["f0:99:bf:10:00:77"]}\n')
    w = Writer(folder / "hostile.pcap")
    session(w, "09:42:10", "3c:22:fb:30:00:01", "10.20.10.131", "tls", TLS_NAME, "157.240.1.174", 443)
    w.out.close()
    (folder / "proxy.log").write_text(f"1781604931.004      0 10.20.10.21 TCP_DENIED/403 3912 CONNECT {PROXY_HOST}:443 "
                                      "jcarter HIER_NONE/- text/html\n", encoding="utf-8")
    store = folder / "store"
    run_cli("replay", "--config", config, folder / "hostile.pcap", folder / "proxy.log", store=store, check=True)
    return config, store, folder


def shows_nothing_raw(text: str) -> None:
    found = sorted({f"U+{ord(c):04X}" for c in RAW.findall(text)})
    assert not found, f"raw control characters reach the terminal: {found}\n{text!r}"


def test_decode(hostile):
    _, _, folder = hostile
    out = run_cli("decode", folder / "hostile.pcap", folder / "proxy.log", check=True).stdout
    shows_nothing_raw(out)
    assert any(line.endswith(f" {TLS_SHOWN}") and " tls " in line for line in out.splitlines())
    assert f" {PROXY_SHOWN}:443" in out


def test_breaches_table_and_exact_json(hostile):
    config, store, _ = hostile
    out = run_cli("breaches", "--config", config, store=store, check=True).stdout
    shows_nothing_raw(out)
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1] == "2 breaches"  # header, one line per breach: no row split
    assert f" {TLS_SHOWN} " in lines[1] and " P18 " in lines[1]
    assert f" {PROXY_SHOWN} " in lines[2] and " P8 " in lines[2]
    rows = [json.loads(line) for line in run_cli("breaches", "--config", config, "--json", store=store,
                                                  check=True).stdout.splitlines()]
    assert [r["host"] for r in rows] == [TLS_NAME.lower(), PROXY_HOST]  # JSON says exactly what was seen


def test_explain(hostile):
    config, store, _ = hostile
    sources = [json.loads(line)["source_ref"] for line in run_cli(
        "breaches", "--config", config, "--json", store=store, check=True).stdout.splitlines()]
    tls = run_cli("explain", "--config", config, sources[0], "--kind", "tls", store=store, check=True).stdout
    shows_nothing_raw(tls)
    assert f"  host: {TLS_SHOWN}; client 10.20.10.131:" in tls.splitlines()[3]  # one line: the newline did not split it
    proxy = run_cli("explain", "--config", config, sources[1], store=store, check=True).stdout
    shows_nothing_raw(proxy)
    assert f"  host: {PROXY_SHOWN}; client 10.20.10.21" in proxy


def test_audit_show(hostile):
    """The reason a requester typed (on the web form or the command line) and a subject nobody has, as the
    headteacher reads the audit chain."""
    config, store, folder = hostile
    ask = ["--from", "2026-06-16", "--to", "2026-06-16", "--reason", HOSTILE]
    run_cli("report", "--config", config, "--user", "sokafor", "--requested-by", "dpatel", *ask, "-o",
            folder / "report.html", store=store, check=True)
    typo = run_cli("report", "--config", config, "--user", HOSTILE, "--requested-by", "hmorgan", *ask, store=store)
    assert typo.returncode == 2
    out = run_cli("audit", "show", "--config", config, "--requested-by", "hmorgan", store=store, check=True).stdout
    shows_nothing_raw(out)
    lines = out.splitlines()
    assert len(lines) == 3  # the report, the refused one, this look: one line each
    assert lines[0].endswith(f"line manager; reason: {HOSTILE_SHOWN}") and " sokafor " in lines[0]
    assert f" refused  {HOSTILE_SHOWN} " in lines[1] and lines[1].endswith(f"; reason: {HOSTILE_SHOWN}")


def test_check_ipads(hostile):
    """An asset tag as the register (an MDM's export) spells it."""
    config, store, _ = hostile
    out = run_cli("check-ipads", "--config", config, "--date", "2026-06-16", store=store, check=True).stdout
    shows_nothing_raw(out)
    assert f"{IPAD_SHOWN}: not seen on 2026-06-16 by " in out
