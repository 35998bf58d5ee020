"""Flows from the kernel: connection-tracking events of the gateway that routes the traffic.

With `nf_conntrack_acct` on, the kernel counts packets and bytes of every tracked connection both ways
(IP bytes, the convention ictwatch's flows use), and `conntrack -E -o timestamp,extended -e DESTROY`
reports each connection as it ends. In line-rate mode these replace counting every packet in Python
(`collector.flow_source: conntrack`); the packets ictwatch still captures give the names, and the
pipeline names these flows from the DNS answers it has seen (ictwatch/pipeline.py).

A line looks like

    [1795917726.288789]	[DESTROY] ipv4 2 tcp 6 src=10.20.10.21 dst=203.0.113.9 sport=50123 dport=443
    packets=12 bytes=1800 src=203.0.113.9 dst=10.20.10.21 sport=443 dport=50123 packets=10 bytes=9000
    [ASSURED] mark=0 delta-time=42 use=1

(one line): the first `src=...bytes=` group is the original direction (the client), the second the
reply. `delta-time` (with `nf_conntrack_timestamp`) is the connection's lifetime in seconds.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable

from collector.observation import Observation, seconds_to_us
from collector.skips import SkipCounter

COMMAND = ["conntrack", "-E", "-o", "timestamp,extended", "-e", "DESTROY"]
_PAIR = re.compile(r"(\w[\w-]*)=(\S+)")
_TIME = re.compile(r"^\[(\d+\.\d+)\]")


def parse_event(line: str, ref: str) -> Observation:
    """A `flow` observation from one DESTROY event; ValueError for any other line."""
    stamp = _TIME.match(line)
    if stamp is None or "[DESTROY]" not in line:
        raise ValueError("not a conntrack DESTROY event")
    words = line.split()
    proto = next((w for w in words if w in ("tcp", "udp", "icmp", "icmpv6", "sctp")), None)
    pairs = _PAIR.findall(line)
    first: dict[str, str] = {}
    reply: dict[str, str] = {}
    for key, value in pairs:
        (reply if key in first and key in ("src", "dst", "sport", "dport", "packets", "bytes") else first).setdefault(
            key, value)
    if "src" not in first or "bytes" not in first:
        raise ValueError("no addresses or counters (is nf_conntrack_acct on?)")
    lifetime = float(first.get("delta-time", reply.get("delta-time", 0)) or 0)
    end_us = seconds_to_us(float(stamp.group(1)))
    obs = Observation(end_us - int(lifetime * 1_000_000), "flow", "conntrack", ref, first["src"],
                      int(first["sport"]) if "sport" in first else None, first["dst"],
                      int(first["dport"]) if "dport" in first else None, proto)
    obs.packets_out, obs.bytes_out = int(first["packets"]), int(first["bytes"])
    obs.packets_in, obs.bytes_in = int(reply.get("packets", 0)), int(reply.get("bytes", 0))
    obs.duration_s = lifetime or None
    return obs


class ConntrackFlows:
    """`conntrack -E` as a running source: each ended connection handed to `submit` as an observation."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or COMMAND
        self.skips = SkipCounter()
        self.events = 0
        self._proc: subprocess.Popen[str] | None = None

    def run(self, submit: Callable[[list[Observation]], None], stop: threading.Event) -> None:
        """Read events until `stop` is set or conntrack exits; observations go to `submit` a second's
        worth at a time."""
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._proc.stdout is not None
        pending: list[Observation] = []
        lock = threading.Lock()
        done = threading.Event()

        def flush() -> None:
            while True:
                finished = done.wait(1.0) or stop.is_set()
                with lock:
                    batch, pending[:] = list(pending), []
                if batch:
                    submit(batch)
                if finished:
                    return

        flusher = threading.Thread(target=flush, daemon=True)
        flusher.start()
        for line in self._proc.stdout:
            if stop.is_set():
                break
            self.events += 1
            ref = f"conntrack#{self.events}"
            try:
                obs = parse_event(line, ref)
            except ValueError as exc:
                self.skips.refused(exc, "bad_conntrack_event", ref)
                continue
            with lock:
                pending.append(obs)
        done.set()
        flusher.join(10)

    def stop(self) -> None:
        """End the conntrack process (its reader then stops)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
