"""Live capture: packets from a capture process, so the daemon itself needs no root.

`LiveCaptureSource` starts dumpcap (Wireshark's capture tool, which Debian can give the capture
capabilities to the `wireshark` group), or tcpdump, writing pcap to a pipe; ictwatch only reads the
pipe. Or it reads a FIFO that a capture service of its own writes (`capture_tool: pipe`): then the
daemon never starts a privileged program at all and can run with NoNewPrivileges. When neither is
installed (neither dumpcap nor tcpdump), scapy's sniffer captures in-process (that needs root or
CAP_NET_RAW). A reader thread turns the stream into packets; `run` decodes them and, whenever the wire
is quiet for `tick_s`, lets flows expire and calls `on_tick` (the pipeline flushes its batch then).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.metrics import CAPTURE_DROPPED, INTERFACE_DROPPED
from collector.observation import Observation
from collector.packet.flows import ConsumerFailed
from collector.packet.packets import PacketDecoder, decode_frame
from collector.packet.pcap import CaptureError, TruncatedCapture, read_packets
from collector.skips import SkipCounter

log = logging.getLogger("ictwatch.collector")
Packet = tuple[int, int, int, bytes]


class CaptureToolError(Exception):
    """No capture tool can be started for the interface."""


def capture_command(tool: str, interface: str, capture_filter: str | None) -> list[str]:
    """The command line that writes pcap for `interface` to standard output."""
    if tool == "dumpcap":
        cmd = ["dumpcap", "-q", "-i", interface, "-P", "-w", "-"]
        return cmd + (["-f", capture_filter] if capture_filter else [])
    if tool == "tcpdump":
        return ["tcpdump", "-n", "-U", "-i", interface, "-w", "-"] + ([capture_filter] if capture_filter else [])
    raise CaptureToolError(f"unknown capture tool {tool!r}")


def choose_tool(preferred: str = "auto") -> str:
    """dumpcap, tcpdump or scapy: the preferred one if given, else the first installed."""
    if preferred != "auto":
        return preferred
    for tool in ("dumpcap", "tcpdump"):
        if shutil.which(tool):
            return tool
    return "scapy"


class LiveCaptureSource:
    """Packets from a network interface, until `stop()`."""

    progress = None  # a `collector.sources.Source` with no end to measure progress to, not read in batches
    run_batches = None

    def __init__(self, interface: str, capture_filter: str | None = None, tool: str = "auto",
                 tick_s: float = 0.5, now: Callable[[], float] = time.time, pipe: str | None = None) -> None:
        self.interface = interface
        self._pipe = pipe
        self.dropped = 0
        """Packets the capture tool reported dropped when it stopped."""
        self._reader: threading.Thread | None = None
        self.path = None
        self.skips = SkipCounter()
        self.packets = 0
        self.tool = choose_tool(tool)
        self._filter = capture_filter
        self._tick_s = tick_s
        self._now = now
        self._queue: queue.Queue[Packet | None] = queue.Queue(maxsize=100_000)
        self._stopped = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sniffer: Any = None

    def run(self, emit: Callable[[Observation], None], on_tick: Callable[[], None] | None = None) -> None:
        """Capture and decode until stopped (or the capture tool exits)."""
        decoder = PacketDecoder(emit, self.skips, self.interface)
        self._start()
        try:
            self._decode(decoder, on_tick)
        except ConsumerFailed as failed:  # the consumer's own exception, as if it had been called directly
            raise failed.cause from None

    def _decode(self, decoder: PacketDecoder, on_tick: Callable[[], None] | None) -> None:
        last_tick = time.monotonic()
        try:
            while True:
                try:
                    item, quiet = self._queue.get(timeout=self._tick_s), False
                except queue.Empty:
                    item, quiet = None, True
                if (item is None and not quiet) or (quiet and (self._stopped.is_set() or self._sniffer_died())):
                    break
                if item is not None:
                    frame, ts, linktype, data = item
                    decode_frame(decoder, frame, ts, linktype, data, self.skips, self.interface)
                    # a busy wire is never quiet: tick every `tick_s` anyway (checked every 256 packets), so
                    # flows expire, the packet count is published and a reload is taken under load too
                    if decoder.packets & 255 or time.monotonic() - last_tick < self._tick_s:
                        continue
                decoder.tick(int(self._now() * 1_000_000))
                self.packets = decoder.packets  # while running too: the packets metric reads it
                self._interface_drops()
                last_tick = time.monotonic()
                if on_tick:
                    on_tick()
        finally:
            self.stop()
            if self._reader is not None:
                self._reader.join(15)  # until the tool has said what it dropped
            self.packets = decoder.packets
            decoder.finish()

    def _interface_drops(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # not a local interface (a FIFO), or no such statistic
            INTERFACE_DROPPED.set(int(Path(f"/sys/class/net/{self.interface}/statistics/rx_dropped").read_text()))

    def _sniffer_died(self) -> bool:
        return self._sniffer is not None and not self._sniffer.running

    def stop(self) -> None:
        """Stop capturing; `run` returns after the packets already read."""
        self._stopped.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        if self._sniffer is not None and self._sniffer.running:
            self._sniffer.stop(join=False)

    def _start(self) -> None:
        if self.tool == "scapy":
            return self._start_scapy()
        if self.tool == "pipe":
            if not self._pipe:
                raise CaptureToolError("capture_tool pipe needs collector.capture_pipe")
            threading.Thread(target=self._read_fifo, args=(self._pipe,), name="capture-reader", daemon=True).start()
            log.info("reading captured packets from %s", self._pipe)
            return None
        cmd = capture_command(self.tool, self.interface, self._filter)
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise CaptureToolError(f"cannot start {self.tool}: {exc.strerror}") from None
        self._reader = threading.Thread(target=self._read_pipe, name="capture-reader", daemon=True)
        self._reader.start()
        log.info("capturing on %s with %s", self.interface, self.tool)
        return None

    def _read_pipe(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            for packet in read_packets(self._proc.stdout):
                self._queue.put(packet)
        except TruncatedCapture:
            pass  # the tool was stopped mid-record
        except CaptureError as exc:
            err = self._proc.stderr.read().decode("utf-8", "replace") if self._proc.stderr else ""
            log.error("capture on %s failed: %s %s", self.interface, exc, err.strip()[-300:])
        else:
            self._count_drops()
        finally:
            self._queue.put(None)

    def _count_drops(self) -> None:
        """dumpcap says, as it stops, how many packets it received and dropped on the interface."""
        assert self._proc is not None
        try:
            self._proc.wait(timeout=10)
            err = self._proc.stderr.read().decode("utf-8", "replace") if self._proc.stderr else ""
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return
        found = re.search(r"Packets received/dropped on interface .*?: \d+/(\d+)", err)
        if found:
            self.dropped = int(found.group(1))
            CAPTURE_DROPPED.inc(self.dropped)

    def _read_fifo(self, path: str) -> None:
        """Packets from the FIFO a capture service writes, reopened whenever that service restarts."""
        while not self._stopped.is_set():
            try:
                with open(path, "rb") as stream:  # waits for the writer
                    for packet in read_packets(stream):
                        if self._stopped.is_set():  # SIGTERM: what was read is judged, the rest left unread
                            break
                        self._queue.put(packet)
            except TruncatedCapture:
                pass  # the writer stopped mid-record
            except (CaptureError, OSError) as exc:
                log.error("capture pipe %s: %s", path, exc)
                time.sleep(1)
            if not self._stopped.is_set():
                log.warning("capture pipe %s closed; waiting for the capture service", path)
        self._queue.put(None)

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
