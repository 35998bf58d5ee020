"""Every log format's reader, fed whatever a disk can hold (issue 19, points 12 and 13): random bytes, invalid
UTF-8, runs of NUL bytes, lines of up to 9 MB, a deeply nested JSON line, among good records. A property test
(hypothesis): the reader never raises, each line is a record read or a record skipped (lines over 64 KiB as
`line_too_long`, whatever they hold), and the Python memory it takes (tracemalloc's peak) stays under 8 MB
whatever the length of the lines (the batch reader's chunks are cut to 1 MB for the test: it holds 8 MB of
log at once by design, whatever its lines). NUL runs are holes in a sparse file, so a 9 MB line costs no disk."""

from __future__ import annotations

import gzip
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from collector.logs import squid_batch
from collector.logs.formats import FORMATS, Format, line_reader
from collector.logs.lines import CHUNK, MAX_LINE
from collector.sources import LogLineSource
from tests.collector.logs.test_formats import SAMPLES, settings_for

RUNS = [MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 3 << 20, 9 << 20]
"""Lengths of the runs of one byte a line may be: either side of the limit, and far past it."""
PEAK = 8 << 20


def _good(name: str) -> bytes:
    """One record of the format, which gives one observation (the sample's first; for dhcpd, its held lease)."""
    if name == "dhcpd-leases":
        return b"lease 10.20.10.50 {\n  starts 2 2026/06/16 07:00:00;\n  ends 2 2026/06/16 08:00:00;\n" \
               b"  hardware ethernet 3c:22:fb:30:00:03;\n}"
    return SAMPLES[name].splitlines()[0].encode()


def _piece(good: bytes) -> st.SearchStrategy[tuple[str, bytes | tuple[int, int]]]:
    """A line, or (for a run) the byte and how many of it, written as a hole when the byte is NUL."""
    return st.one_of(
        st.just(("bytes", good)),
        st.binary(max_size=120).map(lambda b: ("bytes", b.replace(b"\n", b""))),
        st.text(max_size=60).map(lambda t: ("bytes", t.encode("utf-8", "surrogatepass").replace(b"\n", b""))),
        st.sampled_from([b"\xff\xfe\xc3", b"\xed\xa0\x80", b"{\"event_type\": \"tls\"}", b"   \t\r"]).map(
            lambda b: ("bytes", b)),
        st.tuples(st.sampled_from([0, 0x20, 0xFF, ord("["), ord("a")]), st.sampled_from(RUNS)).map(
            lambda run: ("run", run)),
    )


def _write(path: Path, pieces: list[tuple[str, bytes | tuple[int, int]]], newline_at_end: bool,
           zipped: bool) -> list[tuple[int, int]]:
    """Write the lines (NUL runs as holes in a plain file), gzipped or not; returns each line's length and
    whether it is blank, as (length, 1 if it holds more than ASCII white space)."""
    shape = []
    with gzip.open(path, "wb", compresslevel=1) if zipped else path.open("wb") as f:
        for i, (kind, value) in enumerate(pieces):
            if i:
                f.write(b"\n")
            if kind == "run":
                byte, n = value  # type: ignore[misc]
                if byte == 0 and not zipped:
                    f.seek(n - 1, 1)
                    f.write(b"\0")
                else:
                    f.write(bytes([byte]) * n)
                shape.append((n, 1 if byte not in (0x20,) else 0))
            else:
                line: bytes = value  # type: ignore[assignment]
                f.write(line)
                shape.append((len(line), 1 if line.strip() else 0))
        if newline_at_end:
            f.write(b"\n")
    return shape


def _read(fmt: Format, path: Path, batches: bool) -> tuple[int, dict[str, int]]:
    """(observations, skips by reason) of the format's reader over `path`, with tracemalloc's peak checked."""
    options = settings_for(fmt.name)
    source = fmt.source(path) if fmt.source else LogLineSource(path, fmt.name, line_reader(fmt, options),
                                                               fmt.skip_reason, fmt.batch)
    tracemalloc.start()
    try:
        if batches:
            assert source.run_batches is not None
            rows = source.run_batches(lambda table: None)
        else:
            seen = Counter[str]()  # counted, not kept: the peak is the reader's
            source.run(lambda obs: seen.update(("row",)))
            rows = seen["row"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK, f"{fmt.name}: {peak} bytes at the peak"
    return rows, dict(source.skips.by_reason)


READERS = [(fmt, False) for fmt in FORMATS] + [(fmt, True) for fmt in FORMATS if fmt.batch]


@pytest.mark.parametrize(("fmt", "batches"), READERS,
                         ids=[f"{fmt.name}{' in batches' if b else ''}" for fmt, b in READERS])
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), newline_at_end=st.booleans(), zipped=st.booleans())
def test_every_line_is_read_or_counted_in_flat_memory(tmp_path, monkeypatch, fmt, batches, data, newline_at_end,
                                                      zipped):
    monkeypatch.setattr(squid_batch, "CHUNK", CHUNK)  # the batch reader's 8 MB chunks, cut to the line reader's
    pieces = data.draw(st.lists(_piece(_good(fmt.name)), min_size=1, max_size=12))
    path = tmp_path / "input.log"
    shape = _write(path, pieces, newline_at_end, zipped)
    assume(zipped or path.read_bytes()[:2] != b"\x1f\x8b")  # what starts as gzip is read as gzip
    rows, skipped = _read(fmt, path, batches)
    too_long = sum(1 for n, _ in shape if n > MAX_LINE)
    assert skipped.get("line_too_long", 0) == too_long
    assert set(skipped) <= {fmt.skip_reason, "line_too_long"}
    goods = sum(1 for kind, value in pieces if kind == "bytes" and value == _good(fmt.name))
    if fmt.name == "dhcpd-leases":  # records of several lines: each good one read, whatever lies around it
        assert rows == goods
        return
    comments = sum(1 for kind, value in pieces if kind == "bytes" and value.startswith(b"#"))  # type: ignore[union-attr]
    lines = sum(1 for n, nonblank in shape if n > MAX_LINE or nonblank)
    if fmt.name == "dnsmasq-leases":
        lines -= comments  # a comment is neither a lease nor a bad one
    assert rows >= goods and rows + sum(skipped.values()) == lines


@pytest.mark.parametrize("fmt", [fmt for fmt in FORMATS if fmt.name in ("squid", "suricata-eve", "dnsmasq-leases")],
                         ids=lambda fmt: fmt.name)
@pytest.mark.parametrize("batches", [False, True])
def test_a_gzip_cut_short_is_read_as_far_as_it_goes(tmp_path, monkeypatch, fmt, batches):
    """A rotated log whose compression a full disk interrupted: the lines before the cut are read, and the cut
    is counted once as `truncated_input`."""
    monkeypatch.setattr(squid_batch, "CHUNK", CHUNK)
    if batches and not fmt.batch:
        pytest.skip("no batch reader")
    path = tmp_path / "input.log.gz"
    whole = gzip.compress((_good(fmt.name) + b"\n") * 20_000, compresslevel=1)
    path.write_bytes(whole[: len(whole) // 2])
    rows, skipped = _read(fmt, path, batches)
    assert 0 < rows < 20_000 and skipped == {"truncated_input": 1}
