"""The capture worker (collector/capture/worker.py): a real pcap written into a FIFO, or a file replayed,
decoded in a process of its own and handed to the parent as columns; against the same capture decoded in
the test's own process by `CaptureSource`. Its skips cross the process boundary; stopping it mid-capture
loses nothing it had read; its death is reported and what it sent before is kept."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter, rdpcap

from collector.capture.live import LiveCaptureSource
from collector.capture.messages import start_worker
from collector.observation import BatchBuilder, Observation
from collector.sources import CaptureSource, InputError, WorkerCaptureSource
from tests.bench.bench_decode import write_capture
from tests.conftest import ROOT

SCHOOL_DAY = ROOT / "fixtures" / "school-day" / "school-day.pcap"


def with_bad_frames(dest: Path, packets: int | None = None) -> Path:
    """The school day's capture (its first `packets`), then a TCP header of impossible length and a frame too
    short for its link: two frames the decoder counts and skips."""
    frames = list(rdpcap(str(SCHOOL_DAY)))[:packets]
    bad_tcp = bytearray(bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2)))
    bad_tcp[14 + 20 + 12] = 0x20  # data offset 8 bytes: impossible
    with PcapWriter(str(dest), linktype=1, sync=True) as out:
        for frame in frames:
            out.write(frame)
        last = float(frames[-1].time)
        for i, data in enumerate((bytes(bad_tcp), b"\x00" * 10), 1):
            out.write_packet(data, sec=int(last) + i, usec=0)
    return dest


def in_process(path: Path) -> tuple[list[Observation], dict[str, int]]:
    out: list[Observation] = []
    source = CaptureSource(path)
    source.run(out.append)
    return out, dict(source.skips.by_reason)


def rows(batches: list[list[list]]) -> list[Observation]:
    return [Observation(*row) for columns in batches for row in zip(*columns, strict=True)]


def signals(observations: list[Observation]) -> list[tuple]:
    """What a capture read besides its flows (whose records a live capture cuts where its clock says),
    without the name of the input in `source_ref`."""
    return sorted((o.ts_us, o.kind, o.host, o.src_ip, o.dst_ip, o.source_ref.split("#")[1])
                  for o in observations if o.kind != "flow")


def flow_totals(observations: list[Observation]) -> tuple[int, int]:
    flows = [o for o in observations if o.kind == "flow"]
    return sum(o.bytes_out or 0 for o in flows), sum(o.bytes_in or 0 for o in flows)


@pytest.fixture(autouse=True)
def niceness_kept():
    """A live capture run here lowers every thread of this process to nice 10 (`yield_to_worker`); as root the
    tests put it back, so that the daemons later tests start are not born at nice 10 too."""
    threads = {int(t): os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir("/proc/self/task")}
    yield
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # not root, or a thread that has ended
            os.setpriority(os.PRIO_PROCESS, int(tid), threads.get(int(tid), min(threads.values())))


def capture_fifo(tmp_path: Path, write: callable, until_packets: int) -> tuple[LiveCaptureSource, list]:
    """A live capture (`capture_tool: pipe`) of what `write(fifo)` writes, stopped once `until_packets` are
    read; the batches it handed on."""
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    source = LiveCaptureSource("pipe", tool="pipe", pipe=str(fifo), tick_s=0.1)
    batches: list = []
    writer = threading.Thread(target=write, args=(fifo,), daemon=True)
    writer.start()

    def tick() -> None:
        if source.packets >= until_packets:
            source.stop()

    source.run(batches.append, on_tick=tick)
    writer.join(10)
    return source, batches


def test_a_fifo_capture_reaches_the_parent_with_its_skips(tmp_path):
    capture = with_bad_frames(tmp_path / "day.pcap")
    expected, expected_skips = in_process(capture)
    assert expected_skips == {"bad_tcp_header": 1, "truncated_link": 1}  # the frames appended

    def write(fifo: Path) -> None:
        with open(fifo, "wb") as out:
            out.write(capture.read_bytes())

    source, batches = capture_fifo(tmp_path, write, 202)
    got = rows(batches)
    assert source.packets == 202
    assert signals(got) == signals(expected) and len(signals(got)) > 20
    assert flow_totals(got) == flow_totals(expected)
    assert dict(source.skips.by_reason) == expected_skips


def test_a_pcapng_stream_larger_than_one_read_reaches_the_parent_whole(tmp_path):
    """pcapng (dumpcap's own format) is read block by block, in exact sizes cut from the worker's large reads
    of the pipe: a capture of several reads (3,000 packets of the generated mix, 2.6 MB, made pcapng by
    Wireshark's editcap) gives the observations of the same file decoded here."""
    if shutil.which("editcap") is None:
        pytest.skip("editcap (Wireshark) is not installed")
    write_capture(tmp_path / "mix.pcap", 3000)
    capture = tmp_path / "mix.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(tmp_path / "mix.pcap"), str(capture)], check=True)
    assert capture.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a" and capture.stat().st_size > 1 << 20
    expected, _ = in_process(capture)

    def write(fifo: Path) -> None:
        with open(fifo, "wb") as out:
            out.write(capture.read_bytes())

    source, batches = capture_fifo(tmp_path, write, len(rdpcap(str(tmp_path / "mix.pcap"))))
    got = rows(batches)
    assert dict(source.skips.by_reason) == {}
    assert signals(got) == signals(expected) and len(signals(got)) > 100
    assert flow_totals(got) == flow_totals(expected)


def test_stopped_mid_capture_the_worker_hands_on_all_it_had_read(tmp_path):
    """The writer keeps the FIFO open (a capture service still running) after 120 packets: SIGTERM, and
    what those packets made, flows still open included, reaches the parent."""
    half = with_bad_frames(tmp_path / "half.pcap", 120)
    expected, _ = in_process(half)
    done = threading.Event()

    def write(fifo: Path) -> None:
        with open(fifo, "wb") as out:
            out.write(half.read_bytes())
            out.flush()
            done.wait(20)

    source, batches = capture_fifo(tmp_path, write, 122)
    done.set()
    got = rows(batches)
    assert source.packets == 122
    assert signals(got) == signals(expected)
    assert flow_totals(got) == flow_totals(expected) != (0, 0)


def test_the_worker_dying_is_reported_and_what_it_sent_is_kept(tmp_path, caplog):
    capture = with_bad_frames(tmp_path / "day.pcap")
    killed: list = []

    def write(fifo: Path) -> None:
        with open(fifo, "wb") as out:
            out.write(capture.read_bytes())
            out.flush()
            threading.Event().wait(20)  # a capture service that carries on

    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    source = LiveCaptureSource("pipe", tool="pipe", pipe=str(fifo), tick_s=0.1)
    threading.Thread(target=write, args=(fifo,), daemon=True).start()
    batches: list = []

    def tick() -> None:
        if batches and not killed:
            killed.append(source._proc.pid)
            os.kill(source._proc.pid, signal.SIGKILL)

    with caplog.at_level(logging.ERROR):
        source.run(batches.append, on_tick=tick)  # returns: the capture stops, as when the tool exits
    assert killed
    assert "capture worker exited (status -9) before its capture ended" in caplog.text
    assert len(rows(batches)) > 0


@pytest.mark.parametrize("cut", [False, True])
def test_a_file_decoded_ahead_gives_the_batches_and_skips_of_the_file_decoded_here(tmp_path, cut):
    capture = with_bad_frames(tmp_path / "day.pcap")
    if cut:  # a capture cut off in its last record: counted as truncated_capture both ways
        capture.write_bytes(capture.read_bytes()[:-5])
    here: list = []
    direct = CaptureSource(capture)
    builder = BatchBuilder(here.append, 64, max_age_s=1e9)
    direct.run(builder.add)
    builder.flush()

    proc = start_worker(["--file", str(capture), "--rows", "64"])
    ahead = WorkerCaptureSource(capture, proc)
    tables: list = []
    assert ahead.run_batches(tables.append) == sum(t.height for t in here)
    assert [t.height for t in tables] == [t.height for t in here]
    assert all(a.equals(b) for a, b in zip(tables, here, strict=True))
    assert (ahead.packets, dict(ahead.skips.by_reason)) == (direct.packets, dict(direct.skips.by_reason))
    assert ("truncated_capture" in ahead.skips.by_reason) == cut
    assert proc.returncode == 0


def test_a_file_broken_before_its_first_packet_is_an_input_error(tmp_path):
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(SCHOOL_DAY.read_bytes()[:24] + b"\xff" * 16)  # a record claiming 4 GB
    with pytest.raises(InputError, match="broken.pcap"):
        WorkerCaptureSource(broken, start_worker(["--file", str(broken)])).run_batches(lambda table: None)


def test_the_worker_imports_no_engine_store_or_arrow():
    """What the worker process loads: the decoder, not polars, pyarrow, chDB or pydantic (16 MB anonymous in all)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, collector.capture.worker; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert not {"polars", "pyarrow", "numpy", "chdb", "pydantic", "ictwatch", "rules", "storage"} & set(out)
