"""The vectorised Squid parser gives exactly what the per-line reference parser gives."""

from __future__ import annotations

import random

import pytest

from collector.logs.lines import blocks
from collector.logs.squid import parse_line
from collector.logs.squid_batch import parse_chunk
from collector.observation import FIELD_NAMES
from tests.conftest import SCHOOL_DAY, SQUID_PEER


def reference(lines: list[str], name: str) -> tuple[list[dict], list[int]]:
    rows, bad = [], []
    for n, line in enumerate(lines, 1):
        if not line.encode("utf-8", "surrogateescape").strip():  # blank: ASCII white space only
            continue
        try:
            obs = parse_line(line, f"{name}:{n}")
        except ValueError:
            bad.append(n)
            continue
        row = obs.to_json_dict()
        rows.append(row)
    return rows, bad


def vectorised(lines: list[str], name: str) -> tuple[list[dict], list[int]]:
    table, bad, late = parse_chunk(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"), 1, name)
    rows = []
    for row in table.to_dicts():
        row["ts"] = row["ts"].isoformat().replace("+00:00", "Z")
        rows.append({k: row["ts" if k == "ts_us" else k] for k in FIELD_NAMES if k != "ts_us"} | {"ts": row["ts"]})
    return rows, sorted(bad + late)


def compare(lines: list[str], name: str) -> int:
    ref_rows, ref_bad = reference(lines, name)
    vec_rows, vec_bad = vectorised(lines, name)
    assert vec_bad == ref_bad
    assert len(vec_rows) == len(ref_rows)
    for a, b in zip(vec_rows, ref_rows, strict=True):
        assert a == {k: b[k] for k in a}, a["source_ref"]
    return len(ref_rows)


@pytest.mark.parametrize("name", ["filebeat_access1.log", "filebeat_access2.log"])
def test_real_logs(name):
    path = SQUID_PEER / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    assert compare(path.read_text().splitlines(), name) == 100


def test_school_day_log():
    assert compare((SCHOOL_DAY / "squid-access.log").read_text().splitlines(), "squid-access.log") == 8


AWKWARD = [
    "1781596202.120 412 10.20.10.21 TCP_MISS/200 48211 GET http://User:pw@Www.Example.ORG:8080/p?q=1 u "
    "HIER_DIRECT/1.2.3.4 Text/HTML",
    "1781596202.120 0 10.20.10.21 TCP_DENIED/403 0 CONNECT [2001:db8::1]:443 - HIER_NONE/- -",
    "1781596202.120 -1 10.20.10.21 TCP_MISS/000 0 GET https://a.example:99999/ - FIRST_PARENT_MISS/parent -",
    "1781596202.120 5 10.20.10.21 NONE/400 0 NONE error:invalid-request - HIER_NONE/- text/html",
    "1781596202 5 fe80::1 TCP_HIT/200 10 GET ftp://files.example/x - NONE/- - extra fields here",
    "   ", "garbage line", "1781596202.1 5 10.0.0.1 TCP_MISS/2x0 1 GET http://a/ - DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http:///nohost - DIRECT/1.1.1.1 -",
    "1781596202.1 0 127.0.0.1 NONE_NONE/000 0 NONE error:transaction-end-before-headers - HIER_NONE/- -",
    "inf 5 10.0.0.1 TCP_MISS/200 1 GET http://a/ - DIRECT/1.1.1.1 -", "",
    "1781596202.1\t5  10.0.0.1 TCP_MISS/200 1 GET http://a/b\r - DIRECT/1.1.1.1 text/html\r",
    "1781596202.1 5 10.0.0.1 A/B/200 1 GET http://a/ - DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 CONNECT https://a.example/ - DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://caf\u00e9.example/ - DIRECT/1.1.1.1 -",
    "1781596202.1      5 10.0.0.1 TCP_MISS/200 1 GET http://a.example?x=1 -  DIRECT/1.1.1.1 -",
    "  1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET HTTP://A.Example:8080 - DIRECT/1.1.1.1 -  ",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET a/b/c://d - DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 CONNECT a.example:443/x/y/z - DIRECT/1.1.1.1 -",
    "1781596202.1      5 10.0.0.1 TCP_MISS/200 1 GET http://a/ - DIRECT/1.1.1.1 -",  # padding: 5 spaces
    "1781596202.1       5 10.0.0.1 TCP_MISS/200 1 GET http://a/ - DIRECT/1.1.1.1 -",  # more than Squid pads
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://a/ - DIRECT/1.1.1.1 - " + " ".join("x" * 20),
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://a/ -",
    # file types and refusals (collector/filetypes.py, collector/logs/refusal.py)
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/tools/Setup.EXE u DIRECT/1.1.1.1 "
    "application/x-msdownload",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/download.php?id=3 u DIRECT/1.1.1.1 "
    "Application/X-MSDownload;charset=binary",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/office.msi#x u DIRECT/1.1.1.1 "
    "application/x-msdownload",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/latest u DIRECT/1.1.1.1 "
    "application/x-apple-diskimage",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/get?f=a.exe u DIRECT/1.1.1.1 text/html",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/.htaccess u DIRECT/1.1.1.1 text/plain",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/a..tar.GZ u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/Setup.ex%00e u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/" + "a" * 251 + ".exe u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/" + "a" * 252 + ".exe u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://dl.example/" + "/" * 3000 + "x.apk u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET /rel/a.exe?b u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET a:b://h/c.exe u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET ab:/x://h/c.exe u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://h?x/c.exe u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 GET http://h/x.\uff45xe u DIRECT/1.1.1.1 -",
    "1781596202.1 5 10.0.0.1 TCP_MISS/200 1 CONNECT dl.example.com - DIRECT/1.1.1.1 -",
    "1781596202.1 0 10.0.0.1 TCP_DENIED/407 3510 GET http://a/ - HIER_NONE/- text/html",
    "1781596202.1 0 10.0.0.1 TCP_DENIED/302 331 GET http://a/ u HIER_NONE/- text/html",
    "1781596202.1 0 10.0.0.1 TCP_DENIED/000 0 GET http://a/ u HIER_NONE/- -",
    "1781596202.1 0 10.0.0.1 TCP_DENIED_REPLY/403 3439 GET http://a/x.exe u HIER_DIRECT/1.1.1.1 text/html",
    "1781596202.1 0 10.0.0.1 TCP_DENIED/400 1606 GET NONE:// - NONE/- text/html",
    "1781596202.1 0 10.0.0.1 TCP_DENIED/503 1606 GET http://a/ - NONE/- text/html",
]


def test_awkward_lines():
    compare(AWKWARD, "awkward.log")


def test_awkward_lines_of_plain_ascii_take_the_quick_split():
    """A block of printable ASCII is split at spaces as it is (the quick path): the same answers."""
    plain = [line for line in AWKWARD if line.isascii() and line.isprintable()]
    assert len(plain) >= len(AWKWARD) - 3
    compare(plain, "awkward.log")


def test_a_block_holding_a_nul_byte_takes_the_line_by_line_path():
    lines = ["1781596202.120 412 10.20.10.21 TCP_MISS/200 48211 GET http://a.example/ u HIER_DIRECT/1.2.3.4 -",
             "1781596202.120 412 10.20.10.21 TCP_MISS/200 48211 GET http://a.exa\x00mple/ u HIER_DIRECT/1.2.3.4 -",
             "garbage"]
    assert compare(lines, "nul.log") == 2


def test_generated_lines_in_chunks(tmp_path):
    rng = random.Random(4)
    hosts = ["www.bbc.co.uk", "mail.yahoo.com", "www.bet365.com", "10.0.0.9", "x.example"]
    lines = []
    for i in range(5000):
        host = rng.choice(hosts)
        if rng.random() < 0.3:
            method, url = "CONNECT", f"{host}:443"
        else:
            method, url = rng.choice(["GET", "POST"]), f"http://{host}/p/{i}?a={rng.random():.3f}"
        action = rng.choice(["TCP_MISS/200", "TCP_DENIED/403", "TCP_TUNNEL/200", "TCP_HIT/304"])
        client = f"10.20.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        lines.append(f"{1781596200 + i * 0.37:.3f} {rng.randrange(0, 5000):>6} {client} "
                     f"{action} {rng.randrange(100000)} {method} {url} {rng.choice(['-', 'jcarter', 'dpatel'])} "
                     f"HIER_DIRECT/198.51.100.{rng.randrange(1, 255)} {rng.choice(['-', 'text/html'])}")
    assert compare(lines, "gen.log") == 5000
    path = tmp_path / "gen.log"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    unread: list[tuple[str, int]] = []

    def skip(reason: str, number: int) -> None:
        unread.append((reason, number))

    with path.open("rb") as f:
        pieces = list(blocks(f, skip, size=4096))  # small chunks: lines cut at every chunk edge
    counts = [block.count(b"\n") for _, block in pieces]
    assert sum(counts) == 5000 and [first for first, _ in pieces][:2] == [1, 1 + counts[0]]
    assert b"".join(block for _, block in pieces).decode().splitlines() == lines
    path.write_bytes(path.read_bytes()[:-1])  # a last line without its newline is still a line
    with path.open("rb") as f:
        assert sum(block.count(b"\n") for _, block in blocks(f, skip, size=4096)) == 5000
    assert unread == []
