"""Live capture: packets from a capture process, so the daemon itself needs no root.

`LiveCaptureSource` starts the capture worker (collector/capture/worker.py), a process of its own that
reads the interface's AF_PACKET ring itself (`capture_tool: afpacket`, which needs CAP_NET_RAW:
collector/capture/afpacket.py), runs dumpcap (Wireshark's capture tool, which Debian can give the
capture capabilities to the `wireshark` group) or tcpdump writing pcap to a pipe, or reads a FIFO that a
capture service of its own writes (`capture_tool: pipe`: then the daemon never starts a privileged
program at all and can run with NoNewPrivileges), and decodes it. The daemon's process only takes the
worker's batches of observations, as columns, every `tick_s`: the judging and storing, which hold the
interpreter for a tenth of a second each time, can no longer keep the capture waiting. When no capture
tool is installed, scapy's sniffer captures in-process (that needs root or CAP_NET_RAW): a reader thread
queues the packets and `run` decodes them. Either way `run` hands on the observations and calls
`on_tick` every `tick_s`, busy or quiet (the pipeline flushes its batch then).

Once the worker runs, the daemon's own threads step back (`DAEMON_NICE`): on a gateway's busy core the
kernel shares the time between runnable threads, and the daemon has several (judging, the writer, the
embedded engine's inserts and merges), so a burst of judging could take most of the core from the worker
while its ring fills. Judging can wait a moment; the ring cannot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.capture.messages import read_message, start_worker
from collector.capture.worker import Columns, Gather
from collector.metrics import CAPTURE_DROPPED, INTERFACE_DROPPED
from collector.packet.flows import ConsumerFailed
from collector.packet.packets import PacketDecoder, decode_frame
from collector.skips import SkipCounter

log = logging.getLogger("ictwatch.collector")
Packet = tuple[int, int, int, bytes]

DAEMON_NICE = 10
"""The niceness the daemon's threads take once the capture worker has started (the worker keeps the
daemon's own): at 10 the kernel gives the worker about nine tenths of a shared core when both want it."""


def yield_to_worker() -> None:
    """Lower every thread of this process to `DAEMON_NICE` (never raise one); threads started later inherit
    it from the thread that starts them. Lowering one's own priority needs no privilege."""
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError, ValueError):  # a thread that has just ended
            tid = int(task)
            if os.getpriority(os.PRIO_PROCESS, tid) < DAEMON_NICE:
                os.setpriority(os.PRIO_PROCESS, tid, DAEMON_NICE)


class CaptureToolError(Exception):
    """No capture tool can be started for the interface."""


def choose_tool(preferred: str = "auto") -> str:
    """The preferred capture tool if given; else afpacket when this process may open a packet socket (the
    worker it starts inherits that), else the first of dumpcap and tcpdump installed, else scapy."""
    if preferred != "auto":
        return preferred
    if may_capture():
        return "afpacket"
    for tool in ("dumpcap", "tcpdump"):
        if shutil.which(tool):
            return tool
    return "scapy"


def may_capture() -> bool:
    """This process may open an AF_PACKET socket (it holds CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except OSError:
        return False
    return True


def describe(tool: str, interface: str | None, pipe: str | None = None) -> str:
    """`ictwatch check`'s line on the capture path `tool` (`choose_tool`'s answer) takes."""
    where = interface or "the interface given with --interface"
    return {
        "afpacket": f"the capture worker reads {where} through the kernel's packet ring (AF_PACKET, CAP_NET_RAW)",
        "dumpcap": f"dumpcap captures {where} for the capture worker",
        "tcpdump": f"tcpdump captures {where} for the capture worker",
        "pipe": f"the capture worker reads the FIFO {pipe} a capture service writes",
        "scapy": f"scapy's sniffer captures {where} in the daemon's process (no capture tool installed)",
    }[tool]


class LiveCaptureSource:
    """Packets from a network interface, until `stop()`."""

    progress = None  # a `collector.sources.Source` with no end to measure progress to, not read in batches
    run_batches = None

    def __init__(self, interface: str, capture_filter: str | None = None, tool: str = "auto",
                 tick_s: float = 0.5, now: Callable[[], float] = time.time, pipe: str | None = None,
                 buffer_mb: int | None = None) -> None:
        self.interface = interface
        self._pipe = pipe
        self.dropped = 0
        """Packets the capture dropped: the ring's count so far, or the capture tool's when it stopped."""
        self.path = None
        self.skips = SkipCounter()
        self.packets = 0
        self.tool = choose_tool(tool)
        self._filter = capture_filter
        self._buffer_mb = buffer_mb
        self._tick_s = tick_s
        self._now = now
        self._queue: queue.Queue[Packet | None] = queue.Queue(maxsize=100_000)
        self._stopped = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sniffer: Any = None

    def run(self, emit: Callable[[Columns], None], on_tick: Callable[[], None] | None = None,
            flows: bool = True) -> None:
        """Capture and decode until stopped (or the capture tool exits), handing each batch of observations
        to `emit` as one list per field (`FIELD_NAMES` order); without `flows`, `flow` observations are
        left out."""
        if self.tool == "scapy":
            self._run_scapy(emit, on_tick, flows)
        else:
            self._run_worker(emit, on_tick, flows)

    def stop(self) -> None:
        """Stop capturing; `run` returns after the packets already read."""
        self._stopped.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        if self._sniffer is not None and self._sniffer.running:
            self._sniffer.stop(join=False)

    def _worker_command(self, flows: bool) -> list[str]:
        cmd = ["--interface", self.interface, "--tick", str(self._tick_s)] + ([] if flows else ["--no-flows"])
        if self.tool == "pipe":
            if not self._pipe:
                raise CaptureToolError("capture_tool pipe needs collector.capture_pipe")
            return cmd + ["--pipe", self._pipe]
        if self.tool not in ("dumpcap", "tcpdump", "afpacket"):
            raise CaptureToolError(f"unknown capture tool {self.tool!r}")
        if self.tool != "afpacket" and shutil.which(self.tool) is None:
            raise CaptureToolError(f"cannot start {self.tool}: it is not installed")
        cmd += ["--tool", self.tool] + (["--filter", self._filter] if self._filter else [])
        return cmd + (["--buffer-mb", str(self._buffer_mb)] if self._buffer_mb else [])

    def _run_worker(self, emit: Callable[[Columns], None], on_tick: Callable[[], None] | None, flows: bool) -> None:
        """Start the worker and take its messages until its last; a worker that dies is reported, and what it
        sent before stays handed on."""
        try:
            self._proc = start_worker(self._worker_command(flows))
        except OSError as exc:
            raise CaptureToolError(f"cannot start the capture worker: {exc.strerror}") from None
        yield_to_worker()
        assert self._proc.stdout is not None
        if self._stopped.is_set():  # stopped before it started
            self._proc.terminate()
        fd = self._proc.stdout.fileno()
        log.info("capturing on %s with %s", self._pipe if self.tool == "pipe" else self.interface, self.tool)
        last_tick = time.monotonic()
        ended = False
        try:
            while not ended:
                readable, _, _ = select.select([fd], [], [], max(0.0, last_tick + self._tick_s - time.monotonic()))
                if readable:
                    try:
                        message = read_message(fd)
                    except Exception as exc:  # noqa: BLE001 - a broken message ends the capture, reported
                        log.error("capture worker sent a broken message (%s); the capture stops", type(exc).__name__)
                        break
                    if message is None:
                        self._proc.wait()
                        log.error("capture worker exited (status %s) before its capture ended; the capture stops",
                                  self._proc.returncode)
                        break
                    ended = self._take(message, emit)
                if time.monotonic() - last_tick >= self._tick_s or ended:
                    last_tick = time.monotonic()
                    self._interface_drops()
                    if on_tick:
                        on_tick()
        finally:
            self.stop()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()

    def _take(self, message: tuple[Any, ...], emit: Callable[[Columns], None]) -> bool:
        """One message of the worker: its observations to `emit`, its counts and log records taken over; True
        for its last."""
        kind, columns, packets, skips, logs = message[:5]
        for level, name, text in logs:
            logging.getLogger(name).log(level, "%s", text)
        self.packets = packets
        self.skips.add(skips)
        if message[5] > self.dropped:  # the running count (the ring's), or the tool's as it stops
            CAPTURE_DROPPED.inc(message[5] - self.dropped)
            self.dropped = message[5]
        if columns is not None:
            emit(columns)
        if kind != "end":
            return False
        error = message[6]
        if error:
            log.error("%s", error)
        return True

    def _interface_drops(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # not a local interface (a FIFO), or no such statistic
            INTERFACE_DROPPED.set(int(Path(f"/sys/class/net/{self.interface}/statistics/rx_dropped").read_text()))

    def _run_scapy(self, emit: Callable[[Columns], None], on_tick: Callable[[], None] | None, flows: bool) -> None:
        """scapy's sniffer in this process: packets queued by its thread, decoded here."""
        gather = Gather(flows)
        decoder = PacketDecoder(gather.add, self.skips, self.interface)
        self._start_scapy()
        last_tick = time.monotonic()

        def hand_on() -> None:
            columns = gather.take()
            if columns is not None:
                emit(columns)

        try:
            while True:
                try:
                    item, quiet = self._queue.get(timeout=self._tick_s), False
                except queue.Empty:
                    item, quiet = None, True
                if quiet and (self._stopped.is_set() or not self._sniffer.running):
                    break
                if item is not None:
                    frame, ts, linktype, data = item
                    decode_frame(decoder, frame, ts, linktype, data, self.skips, self.interface)
                    # a busy wire is never quiet: tick every `tick_s` anyway (checked every 256 packets)
                    if decoder.packets & 255 or time.monotonic() - last_tick < self._tick_s:
                        continue
                decoder.tick(int(self._now() * 1_000_000))
                self.packets = decoder.packets  # while running too: the packets metric reads it
                hand_on()
                self._interface_drops()
                last_tick = time.monotonic()
                if on_tick:
                    on_tick()
        except ConsumerFailed as failed:  # the consumer's own exception, as if it had been called directly
            raise failed.cause from None
        finally:
            self.stop()
            self.packets = decoder.packets
            decoder.finish()
            hand_on()

    def _start_scapy(self) -> None:
        try:  # the sniffer would fail in its own thread; find out here, where the caller hears of it
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
        except OSError as exc:
            raise CaptureToolError(
                f"scapy's sniffer cannot capture ({exc.strerror}): it needs root or CAP_NET_RAW; install "
                "dumpcap (Debian package wireshark-common) to capture without either"
            ) from None
        from scapy.sendrecv import AsyncSniffer

        frames = iter(range(1, 1 << 62))

        def on_packet(pkt: Any) -> None:
            self._queue.put((next(frames), int(float(pkt.time) * 1_000_000), 1, bytes(pkt)))

        self._sniffer = AsyncSniffer(iface=self.interface, filter=self._filter, prn=on_packet, store=False)
        self._sniffer.start()
        log.info("capturing on %s with scapy's sniffer (no capture tool installed)", self.interface)
