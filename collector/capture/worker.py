"""The capture worker: a process of its own that reads a capture and decodes it, so that nothing the daemon
does with the observations (judging, joins, Arrow, the store) ever keeps the capture waiting.

    python -m collector.capture.worker --tool dumpcap --interface eth0 [--filter BPF] [--buffer-mb 32]
    python -m collector.capture.worker --tool afpacket --interface eth0 [--filter BPF] [--buffer-mb 64]
    python -m collector.capture.worker --pipe /run/ictwatch/capture.fifo
    python -m collector.capture.worker --file a.pcap [--file b.pcap ...]

Why: in one process, the capture's reader thread and the once-a-second judging shared one interpreter
lock, and each time the judging held it for 75–150 ms dumpcap's kernel buffer (2 MB: 12 ms of a saturated
gigabit) overflowed. Here the worker does nothing but read and decode. It starts dumpcap or tcpdump writing
pcap to a pipe of 1 MB, or opens the FIFO a capture service writes, and hands what it reads, in large
reads, to the decoder's bulk path (`PacketDecoder.decode_pcap`, which walks the records in place); pcapng
goes through `read_packets`. With `--tool afpacket` there is no capture tool: the worker reads the
kernel's memory-mapped ring itself (collector/capture/afpacket.py), a block of about a thousand packets
at a time through `PacketDecoder.decode_tpacket_block`. It imports the decoder and nothing else of ours
(no polars, chDB or pydantic).

What it sends its parent on standard output is a stream of messages, each a little-endian 4-byte length
and a pickle (protocol 5) of a tuple:

- `("tick", columns, packets, skips, logs, dropped)` every `--tick` seconds (0.5) while capturing, or
  when `--rows` observations are waiting: the observations gathered since the last message as one list
  per field (`FIELD_NAMES` order; None when there were none), the packets read so far, the skip counts
  added since the last message, the log records (level, logger, message) the decoder wrote meanwhile,
  which the parent logs as its own (the sampled warnings of bad input), and the packets the capture
  dropped so far (the AF_PACKET ring's count, read every tick; dumpcap and tcpdump say theirs only as
  they stop);
- `("end", columns, packets, skips, logs, dropped, error)` last: the same, and why the capture failed
  (None when it was stopped or its input ended).

A file (replay) is sent in batches of exactly `--rows` rows, the batches the parent would have made
itself, with no ticks; a live capture lets flows expire on the worker's own clock (`decoder.tick`).

SIGTERM (the parent's `stop()`): the worker stops the capture tool and decodes what the tool had written
(from a FIFO, what was already read), reports the flows still open, sends its last message and exits.
The parent's pipe is written without blocking: whatever the parent has not read waits in the worker, up
to `BACKLOG_BYTES` (64 MB; at 10–20,000 observations a second, some 2–4 MB a second, that is more than
15 s of a parent that reads nothing). Beyond it a batch is dropped and counted as `capture_backlog`, so
the capture itself is never held up. A worker whose parent has gone (the pipe broken) stops its capture
and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import gzip
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import IO, Any, cast

from collector.capture.messages import encode
from collector.observation import FIELD_NAMES, Observation
from collector.packet.packets import PacketDecoder, Stop, decode_frames
from collector.packet.pcap import CaptureError, TruncatedCapture, pcap_chunks, read_packets
from collector.skips import SkipCounter

log = logging.getLogger("ictwatch.collector")

PIPE_BYTES = 1 << 20
"""The size asked for the pipes from the capture tool and to the parent (Linux's default is 64 KB)."""
READ_BYTES = 1 << 18
"""Bytes asked of the capture's pipe at a time: a chunk the decoder walks in place."""
BACKLOG_BYTES = 64 << 20
"""Messages the parent has not read yet that the worker keeps; beyond, a batch is dropped (counted)."""
BACKLOG_SKIP = "capture_backlog"
"""The skip reason of observations dropped because the parent did not read them in time."""

Columns = list[list[Any]]
_LIST_FIELDS = tuple(i for i, f in enumerate(fields(Observation)) if f.default_factory is list)
_EMPTY: list[str] = []  # never appended to: see `Gather.take`


def capture_command(tool: str, interface: str, capture_filter: str | None, buffer_mb: int | None = None) -> list[str]:
    """The command line that writes pcap for `interface` to standard output; `buffer_mb` is the kernel buffer
    the tool asks for (dumpcap's default is 2 MB, tcpdump's 2 MB too)."""
    if tool == "dumpcap":
        cmd = ["dumpcap", "-q", "-i", interface, "-P", "-w", "-"] + (["-B", str(buffer_mb)] if buffer_mb else [])
        return cmd + (["-f", capture_filter] if capture_filter else [])
    if tool == "tcpdump":
        size = ["-B", str(buffer_mb * 1024)] if buffer_mb else []
        return ["tcpdump", "-n", "-U", "-i", interface, *size, "-w", "-"] + ([capture_filter] if capture_filter else [])
    raise ValueError(f"unknown capture tool {tool!r}")


def dropped_by_tool(stderr: str) -> int:
    """What dumpcap says, as it stops, it dropped on the interface; 0 when it says nothing of it."""
    found = re.search(r"Packets received/dropped on interface .*?: \d+/(\d+)", stderr)
    return int(found.group(1)) if found else 0


def grow_pipe(fd: int) -> None:
    """Ask for a larger pipe (up to /proc/sys/fs/pipe-max-size; what is refused leaves it as it was)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Forward(logging.Handler):
    """Keeps the worker's log records for the next message: the parent logs them in its own format."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, record.name, record.getMessage()))


class Gather:
    """Observations gathered as one list per field (`FIELD_NAMES` order), as `BatchBuilder` keeps them; a
    `flow` is dropped unless `flows` (line-rate mode counts flows otherwise)."""

    def __init__(self, flows: bool = True) -> None:
        self._flows = flows
        self.columns: Columns = [[] for _ in FIELD_NAMES]

    def add(self, obs: Observation) -> None:
        """One observation into the columns."""
        if not self._flows and obs.kind == "flow":
            return
        obs.append_to(self.columns)

    def take(self) -> Columns | None:
        """What was gathered (None when nothing was), leaving the columns empty. Every empty list in it is one
        and the same: pickled once, it is unpickled as one (a new list a row made the parent's unpickling
        three times slower: 0.27 s against 0.08 s for the 49,000 rows of the school mix)."""
        if not self.columns[0]:
            return None
        columns, self.columns = self.columns, [[] for _ in FIELD_NAMES]
        for i in _LIST_FIELDS:
            columns[i] = [value or _EMPTY for value in columns[i]]
        return columns


class Worker:
    """Gathers the decoder's observations as columns and sends them to the parent without ever waiting on
    it; `feed` reads the capture for the decoder, ticking between reads."""

    def __init__(self, out: int, rows: int, tick_s: float, keep_flows: bool, name: str,
                 now: Callable[[], float] = time.time) -> None:
        self.out = out
        """The pipe to the parent (non-blocking)."""
        self._rows = rows
        self._tick_s = tick_s
        self._gather = Gather(keep_flows)
        self._now = now
        self._pending: list[bytes] = []  # messages the parent has not taken yet
        self._pending_bytes = 0
        self._next_tick = time.monotonic() + tick_s
        self._sent_skips: Counter[str] = Counter()
        self.skips = SkipCounter()
        self.logs = _Forward()
        self.decoder = PacketDecoder(self.add, self.skips, name)
        self.stop = Stop()
        self.stopping = False
        self.dropped = 0
        """Packets the capture dropped so far, sent with every message."""
        self.live = tick_s > 0
        self.parent_gone = False
        self.opening = False
        """Waiting for a FIFO's writer: SIGTERM ends the wait."""
        self.on_stop: list[Callable[[], None]] = []
        """What SIGTERM does besides setting the flags: stop the capture tool."""
        self.on_tick: list[Callable[[], None]] = []
        """What each tick reads besides the clock: the ring's drop count."""

    def add(self, obs: Observation) -> None:
        """The decoder's `emit`: one observation into the columns, sent when `rows` are waiting."""
        self._gather.add(obs)
        if len(self._gather.columns[0]) >= self._rows:
            self.send("tick")

    def due(self) -> float | None:
        """Seconds until the next tick (None when not capturing live)."""
        return max(0.0, self._next_tick - time.monotonic()) if self.live else None

    def tick(self) -> None:
        """When a tick is due: let flows expire, and send what was gathered (or, with nothing, the counts)."""
        if not self.live or time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self._tick_s
        self.decoder.tick(int(self._now() * 1_000_000))
        for read in self.on_tick:
            read()
        self.send("tick")

    def send(self, kind: str, *end: Any) -> None:
        """Queue a message with the columns gathered since the last, and write what the pipe takes."""
        columns = self._gather.take()
        if not self.live:  # a file: wait for the parent rather than drop
            while self._pending_bytes > BACKLOG_BYTES and not self.parent_gone:
                select.select([], [self.out], [], 1.0)
                self.write()
        elif columns is not None and self._pending_bytes > BACKLOG_BYTES and kind == "tick":
            self.skips.skip(BACKLOG_SKIP, f"capture#{self.decoder.packets}")  # the parent has stopped reading
            self.skips.by_reason[BACKLOG_SKIP] += len(columns[0]) - 1
            columns = None
        skips = self.skips.by_reason - self._sent_skips
        self._sent_skips = self.skips.by_reason.copy()
        logs, self.logs.records = self.logs.records, []
        message = encode((kind, columns, self.decoder.packets, dict(skips), logs, self.dropped, *end))
        self._pending.append(message)
        self._pending_bytes += len(message)
        self.write()

    def write(self) -> None:
        """Write what the parent's pipe takes now, without waiting."""
        while self._pending and not self.parent_gone:
            try:
                done = os.write(self.out, self._pending[0])
            except BlockingIOError:
                return
            except BrokenPipeError:
                self.parent_gone = True
                self.stopping = True
                return
            self._pending_bytes -= done
            if done == len(self._pending[0]):
                self._pending.pop(0)
            else:
                self._pending[0] = self._pending[0][done:]

    def drain(self) -> None:
        """At the end: wait until the parent has taken every message (or has gone)."""
        while self._pending and not self.parent_gone:
            select.select([], [self.out], [], 1.0)
            self.write()

    def waiting(self) -> bool:
        """Messages wait for the parent."""
        return bool(self._pending)

    def begin(self, name: str) -> None:
        """A new input (replay: the next file), with a decoder of its own."""
        self.decoder = PacketDecoder(self.add, self.skips, name)

    def decode(self, stream: IO[bytes], name: str) -> None:
        """Decode a whole capture stream: in place for a classic pcap, a frame at a time for pcapng."""
        chunks = pcap_chunks(stream)
        if chunks is not None:
            self.decoder.decode_pcap(chunks, self.skips, name, self.stop)
        else:
            decode_frames(self.decoder, read_packets(stream), self.skips, name, self.stop)


class Feed:
    """A capture's pipe as the stream `pcap_chunks` and `read_packets` read: each read waits for data only
    until the worker's next tick, ticks, and hands out what the pipe holds. Once the worker is stopping
    with `cut` set (a FIFO), reads end at once; otherwise (a capture tool, stopped) they run to its end."""

    def __init__(self, fd: int, worker: Worker, cut: bool = False) -> None:
        self._fd = fd
        self._worker = worker
        self._cut = cut
        self._head = b""  # what `peek` looked at

    def read1(self, size: int = READ_BYTES) -> bytes:
        """Up to `size` bytes (at least one), or b"" at the end."""
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            return out
        worker = self._worker
        while True:
            if worker.stopping and self._cut:
                return b""
            writable = [worker.out] if worker.waiting() else []
            readable, ready, _ = select.select([self._fd], writable, [], worker.due())
            if ready:
                worker.write()
            if readable:
                data = os.read(self._fd, max(size, READ_BYTES))
                worker.tick()
                if len(data) > size:  # what was not asked for waits for the next read (pcapng reads exact sizes)
                    data, self._head = data[:size], data[size:]
                return data
            worker.tick()

    def read(self, size: int = -1) -> bytes:
        """Exactly `size` bytes, fewer only at the end."""
        out = b""
        while len(out) < size:
            got = self.read1(size - len(out))
            if not got:
                break
            out += got
        return out

    def peek(self, size: int = 1) -> bytes:
        """The next bytes, left to be read."""
        if len(self._head) < size:
            head, self._head = self._head, b""
            more = self.read(size - len(head))
            self._head = head + more + self._head  # a read may leave bytes beyond `size` waiting too
        return self._head


def run(args: argparse.Namespace) -> int:
    """Capture (or read the files) and decode until the end; the exit status is 0 unless the worker failed."""
    out = sys.stdout.fileno()
    grow_pipe(out)
    os.set_blocking(out, False)
    worker = Worker(out, args.rows, 0.0 if args.file else args.tick, not args.no_flows, args.interface)

    def on_term(_signum: int, _frame: Any) -> None:
        worker.stopping = True
        worker.stop.set = not worker.live  # a file stops at the next record; a capture reads what was written
        for stop in worker.on_stop:
            with contextlib.suppress(OSError):
                stop()
        if worker.opening:
            raise _Stopping

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # Ctrl-C at a terminal reaches the whole process group
    _term_with_parent(args.parent)
    logging.getLogger().addHandler(worker.logs)
    logging.getLogger().setLevel(logging.WARNING)
    if args.file:
        _files(worker, args.file)
        return 0
    error = None
    try:
        if args.pipe:
            error = _fifo(worker, args.pipe)
        elif args.tool == "afpacket":
            error = _ring(worker, args)
        else:
            error = _tool(worker, args)
        worker.decoder.finish()
    except Exception as exc:  # sent to the parent, with what was decoded before
        log.exception("capture worker failed")
        error = f"capture worker failed: {type(exc).__name__}: {exc}"
    worker.send("end", error)
    worker.drain()
    return 1 if error else 0


def _term_with_parent(parent: int | None) -> None:
    """SIGTERM for this worker when its parent dies (even by SIGKILL): it stops its capture tool rather than
    capture for no one (waiting for a FIFO's writer, it would never learn it from a broken pipe)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:  # the parent died before that was asked for
        os.kill(os.getpid(), signal.SIGTERM)


def _files(worker: Worker, paths: Iterable[str]) -> None:
    """Replay: each file decoded to its end as `CaptureSource.run` decodes it, and ended with a message of
    its own (the error is a capture broken before its first packet, which the parent raises)."""
    from collector.logs.lines import open_unzipped

    for path in paths:
        name = Path(path).name
        worker.begin(name)
        error = None
        try:
            stream, _raw = open_unzipped(Path(path), 1 << 20)
            with stream:
                worker.decode(stream, name)
        except TruncatedCapture as cut:
            worker.skips.skip("truncated_capture", f"{name}#{cut.frame}")
        except (EOFError, zlib.error, gzip.BadGzipFile):  # a gzipped capture cut short or corrupt
            worker.skips.skip("truncated_capture", f"{name}#{worker.decoder.packets + 1}")
        except CaptureError as exc:
            if worker.decoder.packets == 0:
                error = f"{path}: {exc}"
            else:
                worker.skips.skip("bad_capture_record", f"{name}#{worker.decoder.packets + 1}")
        except OSError as exc:
            error = f"{path}: {exc.strerror or exc}"
        worker.decoder.finish()
        worker.send("end", error)
    worker.drain()


def _fifo(worker: Worker, path: str) -> str | None:
    """The FIFO a capture service writes, reopened whenever that service restarts, until SIGTERM."""
    while not worker.stopping:
        try:
            worker.opening = True
            fd = os.open(path, os.O_RDONLY)  # waits for the writer; SIGTERM ends the wait
        except _Stopping:
            break
        except OSError as exc:
            log.error("capture pipe %s: %s", path, exc.strerror)
            time.sleep(1)
            continue
        finally:
            worker.opening = False
        grow_pipe(fd)
        try:
            worker.decode(cast(IO[bytes], Feed(fd, worker, cut=True)), path)
        except TruncatedCapture:
            pass  # the writer stopped mid-record
        except CaptureError as exc:
            log.error("capture pipe %s: %s", path, exc)
            time.sleep(1)
        finally:
            os.close(fd)
        worker.send("tick")  # what the writer's last packets made, all of it taken before waiting for the next writer
        worker.drain()
        if not worker.stopping:
            log.warning("capture pipe %s closed; waiting for the capture service", path)
    return None


def _tool(worker: Worker, args: argparse.Namespace) -> str | None:
    """dumpcap or tcpdump until it exits (SIGTERM stops it), what it dropped into `worker.dropped`; why it
    failed."""
    cmd = capture_command(args.tool, args.interface, args.filter, args.buffer_mb)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return f"cannot start {args.tool}: {exc.strerror}"
    assert proc.stdout is not None and proc.stderr is not None
    worker.on_stop.append(proc.terminate)
    grow_pipe(proc.stdout.fileno())
    error = None
    try:
        worker.decode(cast(IO[bytes], Feed(proc.stdout.fileno(), worker)), args.interface)
    except TruncatedCapture:
        pass  # the tool was stopped mid-record
    except CaptureError as exc:
        error = f"{exc}"
    finally:
        if worker.parent_gone and proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
            said = proc.stderr.read().decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            said = ""
    if error is not None:
        error = f"capture on {args.interface} failed: {error} {said.strip()[-300:]}".strip()
    elif proc.returncode not in (0, -signal.SIGTERM) and not worker.stopping:
        error = f"{args.tool} exited with status {proc.returncode}: {said.strip()[-300:]}"
    worker.dropped = dropped_by_tool(said)
    return error


def _ring(worker: Worker, args: argparse.Namespace) -> str | None:
    """The interface's AF_PACKET ring, a block at a time through the decoder, until SIGTERM (then the blocks
    the kernel had handed over are decoded too); its drops are read into `worker.dropped` every tick. Why
    it could not be opened, or None."""
    from collector.capture.afpacket import Ring, RingError

    try:
        ring = Ring(args.interface, args.buffer_mb, args.filter)
    except RingError as exc:
        return str(exc)

    def read_drops() -> None:
        worker.dropped += ring.dropped()

    worker.on_tick.append(read_drops)
    decoder, frame = worker.decoder, 0
    left = ring.blocks  # once stopping: no more than one ring's worth of blocks, even on a busy wire
    try:
        while left:
            block = ring.next_block()
            if worker.stopping:
                left = left - 1 if block is not None else 0
            if block is not None:
                frame = decoder.decode_tpacket_block(block, frame, ring.linktype, worker.skips, args.interface)
            elif worker.stopping:
                break
            else:
                writable = [worker.out] if worker.waiting() else []
                readable, _, _ = select.select([ring], writable, [], worker.due())
                if readable and (error := ring.error()):
                    log.warning("capture on %s: %s", args.interface, os.strerror(error))
            worker.write()
            worker.tick()
    finally:
        read_drops()
        ring.close()
    return None


class _Stopping(Exception):
    """SIGTERM while waiting for a FIFO's writer."""


def main(argv: list[str] | None = None) -> int:
    """The worker's command line."""
    parser = argparse.ArgumentParser(prog="python -m collector.capture.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--tool", choices=("dumpcap", "tcpdump", "afpacket"))
    what.add_argument("--pipe", help="a FIFO a capture service writes pcap or pcapng into")
    what.add_argument("--file", action="append", help="a capture file (replay); may be given again")
    parser.add_argument("--interface", default="capture")
    parser.add_argument("--filter")
    parser.add_argument("--buffer-mb", type=int, help="the capture tool's kernel buffer, or the ring's size")
    parser.add_argument("--tick", type=float, default=0.5)
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--no-flows", action="store_true", help="drop `flow` observations (line-rate mode)")
    parser.add_argument("--parent", type=int, help="the parent's process id: this worker stops when it dies")
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
