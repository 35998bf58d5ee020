"""Capture without a capture tool: an AF_PACKET socket with a TPACKET_V3 memory-mapped ring, as Suricata,
libpcap (1.5 on) and Zeek's af_packet plugin read a Linux interface.

The kernel writes each packet it receives into a ring of blocks it shares with us (`Ring`, 1 MB blocks,
`buffer_mb` of them). It hands a block over when it is full or `RETIRE_MS` after its first packet, so a
quiet wire still delivers within 20 ms; we copy the block's used part out (one copy for about a thousand
packets of the school mix), give the block straight back and walk the copy with the decoder's bulk path
(`PacketDecoder.decode_tpacket_block`). Nothing is copied through a pipe, no program of ours or anyone
else's writes pcap, and a slow moment of the worker is absorbed by the whole ring (32 MB by default: a
fifth of a second of a saturated gigabit) rather than dumpcap's 2 MB. The ring is the kernel's memory,
pinned as long as the capture runs; /proc counts it as the worker's file-backed resident memory.

A BPF filter (`collector.capture_filter`, line-rate mode's) is compiled by libpcap through ctypes
(`pcap_open_dead` + `pcap_compile`, for Ethernet) and attached with `SO_ATTACH_FILTER`; it is attached
before the socket is bound, so nothing unfiltered is ever queued. One difference from dumpcap: the kernel
takes an 802.1Q tag off a frame before any socket sees it and hands it beside the frame, so a filter that
tests `vlan` matches nothing here (libpcap only rewrites `vlan` for a handle it opened on the interface
itself); the decoder is given the frame with its tag put back, as libpcap does. Line-rate mode's filter
still works: its untagged half matches the tagged frames' packets, which the filter sees untagged.

Opening the socket needs CAP_NET_RAW (docs/operations.md: give it to the service alone with systemd's
`AmbientCapabilities=`); dumpcap remains the way to capture with no capability at all.

Sources: linux/if_packet.h (the constants and `tpacket_req3`, `tpacket_block_desc`/`tpacket_hdr_v1`,
`tpacket3_hdr`, `tpacket_stats_v3`, `packet_mreq` layouts), the kernel's
Documentation/networking/packet_mmap.rst (the TPACKET_V3 walk), libpcap's pcap-linux.c
(`pcap_read_linux_mmap_v3`: block ownership by `block_status`, the VLAN tag put back) and pcap/bpf.h
(`bpf_program`, `bpf_insn`), and linux/filter.h (`sock_fprog`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import socket
import struct
from pathlib import Path

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

BLOCK_BYTES = 1 << 20
"""A block of the ring: the unit the kernel hands over (about a thousand packets of the school mix)."""
FRAME_BYTES = 1 << 11
"""`tp_frame_size`: only checked by the kernel in TPACKET_V3 (a frame takes what it needs of a block)."""
RING_MB = 32
"""The ring's size when none is configured: the worker alone at the sender's top speed lost no more with
32 MB than with 64 (tests/bench/bench_live.py's rig, 3 rounds each of 16, 32 and 64 MB, load 3.4-6.9:
its losses there are the sender's bursts outrunning a shared core, whatever the ring), and 32 MB less of
the gateway's memory is pinned."""
RETIRE_MS = 20
"""`tp_retire_blk_tov`: the kernel hands over a block not yet full this long after its first packet."""
LINKTYPES = {1: 1, 772: 1}
"""ARPHRD_ETHER and ARPHRD_LOOPBACK (/sys/class/net/IF/type) to pcap's Ethernet link type."""

_REQ3 = struct.Struct("=7I")  # tpacket_req3
_WORD = struct.Struct("=I")  # a block's tpacket_hdr_v1.block_status at byte 8, blk_len at 20
_STATS = struct.Struct("=3I")  # tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt
_MREQ = struct.Struct("=iHH8s")  # packet_mreq


class RingError(Exception):
    """The ring cannot be opened on the interface, or its filter cannot be compiled."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):  # struct bpf_program
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


class _Fprog(ctypes.Structure):  # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def compile_filter(text: str, linktype: int = 1) -> bytes:
    """The classic BPF program of a tcpdump-syntax filter, compiled by libpcap, as `SO_ATTACH_FILTER`'s
    instructions (8 bytes each); `RingError` naming the filter and libpcap's reason when it is not one."""
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise RingError(f"cannot compile the capture filter: libpcap ({name}) cannot be loaded: {exc}") from None
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    handle = lib.pcap_open_dead(linktype, 262144)
    if not handle:
        raise RingError("cannot compile the capture filter: libpcap's pcap_open_dead failed")
    program = _Program()
    try:
        if lib.pcap_compile(handle, ctypes.byref(program), text.encode(), 1, 0xFFFFFFFF) != 0:
            reason = (lib.pcap_geterr(handle) or b"").decode("utf-8", "replace")
            raise RingError(f"capture filter {text!r} is not a valid BPF filter: {reason}")
        try:
            return ctypes.string_at(program.bf_insns, program.bf_len * ctypes.sizeof(_Insn))
        finally:
            lib.pcap_freecode(ctypes.byref(program))
    finally:
        lib.pcap_close(handle)


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """Attach compiled BPF instructions (`compile_filter`) to a socket."""
    insns = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // ctypes.sizeof(_Insn), ctypes.cast(insns, ctypes.c_void_p))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))  # the kernel copies the instructions


def linktype_of(interface: str) -> int:
    """The pcap link type of an interface's frames in the ring; `RingError` for one the ring does not take."""
    try:
        arphrd = int(Path(f"/sys/class/net/{interface}/type").read_text())
    except (OSError, ValueError):
        raise RingError(f"no network interface {interface!r}") from None
    if arphrd not in LINKTYPES:
        raise RingError(f"interface {interface} is not Ethernet (ARPHRD {arphrd}); capture it with dumpcap")
    return LINKTYPES[arphrd]


class Ring:
    """An AF_PACKET socket bound to `interface` with a TPACKET_V3 ring of `ring_mb` 1 MB blocks (promiscuous,
    as dumpcap captures), read a block at a time with `next_block`; `close()` at the end."""

    def __init__(self, interface: str, ring_mb: int | None = None, capture_filter: str | None = None) -> None:
        self.linktype = linktype_of(interface)
        program = compile_filter(capture_filter, self.linktype) if capture_filter else None
        self.blocks = max(2, ring_mb or RING_MB)
        try:  # protocol 0: nothing is queued until `bind`, after the filter and ring are in place
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise RingError(
                f"cannot open an AF_PACKET socket on {interface} ({exc.strerror}): capture_tool afpacket needs "
                "CAP_NET_RAW (docs/operations.md); dumpcap captures without it"
            ) from None
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            if program is not None:
                attach_filter(self.sock, program)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, _REQ3.pack(
                BLOCK_BYTES, self.blocks, FRAME_BYTES, BLOCK_BYTES // FRAME_BYTES * self.blocks, RETIRE_MS, 0, 0))
            self.ring = mmap.mmap(self.sock.fileno(), BLOCK_BYTES * self.blocks, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
            ifindex = socket.if_nametoindex(interface)
            self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, _MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b""))
            self.sock.bind((interface, ETH_P_ALL))
        except OSError as exc:
            self.sock.close()
            raise RingError(f"cannot open a capture ring on {interface}: {exc.strerror or exc}") from None
        self._next = 0

    def fileno(self) -> int:
        """The socket, readable when a block is ours."""
        return self.sock.fileno()

    def next_block(self) -> bytes | None:
        """The next block's used part, if the kernel has handed it over (None if not yet), copied out; the
        block itself is given back at once."""
        base = self._next * BLOCK_BYTES
        if not _WORD.unpack_from(self.ring, base + 8)[0] & TP_STATUS_USER:
            return None
        used = _WORD.unpack_from(self.ring, base + 20)[0]
        block = self.ring[base : base + min(used, BLOCK_BYTES)]
        _WORD.pack_into(self.ring, base + 8, TP_STATUS_KERNEL)
        self._next = (self._next + 1) % self.blocks
        return block

    def error(self) -> int:
        """The socket's pending error (ENETDOWN when the interface goes down), cleared by reading it; 0 if none.
        A socket with an error is readable until it is read, so a wait would return at once, over and over."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def dropped(self) -> int:
        """Packets the kernel dropped since the last call (the ring full), from `PACKET_STATISTICS` (which
        counts afresh after each reading)."""
        _packets, drops, _freezes = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        return int(drops)

    def close(self) -> None:
        """Unmap the ring and close the socket (which leaves promiscuous mode)."""
        self.ring.close()
        self.sock.close()
