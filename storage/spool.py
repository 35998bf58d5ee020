"""The disk spool: batches that could not be stored wait here, in order, until ClickHouse is back.

Layout: a folder of segment files (`segment-<number>.spool`), each an append-only run of records, and
`acked.json`, the position up to which records have been stored. A record is

    b"ICWS" | payload length (u32, big-endian) | CRC-32 of the payload (u32) | payload

and its payload a JSON header (its own length first, u32) naming the deduplication token and the byte
lengths of what follows: the `activity` rows as an Arrow IPC stream, then the leases learnt with them.
Every append is fsynced before `append` returns, so a record the writer counted as kept survives a
power cut; `acked.json` is replaced atomically (write, fsync, rename, fsync the folder).

A process killed while appending leaves a torn record at the end of the last segment: too short for its
header, shorter than its length says, or with a CRC that does not match. `Spool.open` finds it, reports
it (log warning and a counter), moves its bytes to `torn-<segment>-<offset>.bin` beside the segments so
nothing is silently thrown away, and cuts the segment back to the last whole record. A torn record is
never replayed. A record ClickHouse rejects outright (not a connection or capacity failure) is moved to
`rejected/` by the writer, so one bad batch cannot hold up the rest.

The total size is capped (`max_bytes`): an append that would pass the cap raises `SpoolFull`, which the
writer meets by waiting (backpressure up to the capture) rather than by dropping what it holds. A batch
larger than the whole cap could never be appended, and would wait for ever on an empty spool: the writer
keeps it as `parts`, consecutive runs of its rows that each fit the cap alone, appended one after the
other as room is made. A single row that alone passes the cap is set aside in `rejected/` (a warning, and
the rejected counter) rather than held up behind a cap it can never meet.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from storage import metrics

MAGIC = b"ICWS"
_HEAD = struct.Struct(">4sII")  # magic, payload length, CRC-32 of the payload
_ACKED = "acked.json"
_log = logging.getLogger(__name__)


class SpoolFull(Exception):
    """The spool has reached its size cap."""


@dataclass(frozen=True, slots=True)
class Record:
    """One spooled batch, as the store takes it."""

    token: str
    activity: pa.Table
    leases: pa.Table | None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record starts: its segment file's number and byte offset."""

    segment: int
    offset: int


def _ipc(table: pa.Table | None) -> bytes:
    if table is None:
        return b""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes) -> pa.Table | None:
    return pa.ipc.open_stream(data).read_all() if data else None


def encode(record: Record) -> bytes:
    """The bytes of one record, header and CRC included."""
    activity, leases = _ipc(record.activity), _ipc(record.leases)
    header = json.dumps({"token": record.token, "rows": record.activity.num_rows, "activity": len(activity),
                         "leases": len(leases)}).encode()
    payload = struct.pack(">I", len(header)) + header + activity + leases
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> Record:
    """A record from its (checked) payload."""
    (size,) = struct.unpack_from(">I", payload)
    header = json.loads(payload[4 : 4 + size])
    at = 4 + size
    activity = payload[at : at + header["activity"]]
    leases = payload[at + header["activity"] : at + header["activity"] + header["leases"]]
    table = _table(activity)
    assert table is not None
    return Record(header["token"], table, _table(leases))


def _write_private(path: Path, data: builtins.bytes) -> None:
    """`path` holding `data`, created 0600 (it holds people's activity): never readable by others, whatever
    the umask of the command that writes it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool folder: append at the end, read and acknowledge from the front."""

    def __init__(self, folder: Path, max_bytes: int = 1 << 30) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        metrics.SPOOL_MAX_BYTES.set(max_bytes)
        self.torn = 0
        """Torn records found when the spool was opened."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rejected").mkdir(exist_ok=True)
        self._acked = self._read_acked()
        self.records = self._recover()
        """Records waiting to be stored."""
        # a new process appends to a new segment, numbered after every one that exists or was acknowledged
        self._current = max([*self._segments(), self._acked.segment]) + 1
        self._out: int | None = None
        self._update_metrics()

    # -- state ------------------------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("segment-*.spool"))

    def _path(self, segment: int) -> Path:
        return self.folder / f"segment-{segment:012d}.spool"

    def _read_acked(self) -> Position:
        path = self.folder / _ACKED
        if not path.is_file():
            return Position(0, 0)
        data = json.loads(path.read_text())
        return Position(int(data["segment"]), int(data["offset"]))

    def _write_acked(self, position: Position) -> None:
        tmp = self.folder / (_ACKED + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"segment": position.segment, "offset": position.offset}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / _ACKED)
        _fsync_dir(self.folder)
        self._acked = position

    def bytes(self) -> int:
        """Bytes held in segment files (acknowledged records of the first segment included)."""
        return sum(self._path(s).stat().st_size for s in self._segments())

    def _update_metrics(self) -> None:
        metrics.SPOOL_BYTES.set(self.bytes())
        metrics.SPOOL_RECORDS.set(self.records)

    # -- recovery ---------------------------------------------------------------------------------------

    def _recover(self) -> int:
        """Check every record not yet acknowledged; cut each segment back to its last whole record.
        Returns the number of whole records waiting."""
        records = 0
        for segment in self._segments():
            start = self._acked.offset if segment == self._acked.segment else 0
            if segment < self._acked.segment:
                self._path(segment).unlink()  # wholly acknowledged before a crash could delete it
                continue
            path = self._path(segment)
            good = start
            with open(path, "rb") as f:
                for position, _payload in self._scan(f, segment, start):
                    good = position.offset
                    records += 1
            size = path.stat().st_size
            if good < size:
                self.torn += 1
                metrics.SPOOL_TORN.inc()
                keep = self.folder / f"torn-{segment:012d}-{good}.bin"
                with open(path, "rb") as f:
                    f.seek(good)
                    _write_private(keep, f.read())
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
                _log.warning("spool: a torn record at the end of %s (offset %d, %d bytes) was set aside in %s; "
                             "it is not replayed", path.name, good, size - good, keep.name)
        return records

    @staticmethod
    def _scan(f: BinaryIO, segment: int, start: int) -> Iterator[tuple[Position, builtins.bytes]]:
        """(position after the record, payload) for each whole, checked record from `start`."""
        f.seek(start)
        at = start
        while True:
            head = f.read(_HEAD.size)
            if len(head) < _HEAD.size:
                return
            magic, length, crc = _HEAD.unpack(head)
            if magic != MAGIC:
                return
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            at += _HEAD.size + length
            yield Position(segment, at), payload

    # -- use --------------------------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Add a record at the end and fsync it. `SpoolFull` if it would pass the size cap."""
        data = encode(record)
        if self.bytes() + len(data) > self.max_bytes:
            metrics.SPOOL_FULL.set(1)
            raise SpoolFull(f"spool at {self.folder} is full ({self.max_bytes:,} bytes)")
        metrics.SPOOL_FULL.set(0)
        if self._out is None:
            self._out = os.open(self._path(self._current), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            _fsync_dir(self.folder)
        view = memoryview(data)
        while view:
            written = os.write(self._out, view[: 1 << 20])  # in pieces, as a large buffered write goes
            view = view[written:]
        os.fsync(self._out)
        self.records += 1
        self._update_metrics()

    def parts(self, record: Record) -> Iterator[Record]:
        """`record` as records the empty spool can each hold (`append` takes them one after the other): itself
        when it fits; else its rows halved, and halved again, until each run fits, in order, the leases with
        the first run. A run's deduplication token is the record's with the run's place in it, so the same
        record split again gives the same tokens. A single row that passes the cap alone is set aside in
        `rejected/` instead (see `_set_aside`)."""
        size = len(encode(record))
        if size <= self.max_bytes:
            yield record
            return
        rows = record.activity.num_rows
        if rows <= 1:
            self._set_aside(record, size)
            return
        half = rows // 2
        for start, length, leases in ((0, half, record.leases), (half, rows - half, None)):
            yield from self.parts(Record(f"{record.token}/{start}+{length}", record.activity.slice(start, length),
                                         leases))

    def _set_aside(self, record: Record, size: int) -> None:
        """Keep a record no spool of this cap can hold in `rejected/`, readable by the service only."""
        name = f"oversize-{hashlib.sha256(record.token.encode()).hexdigest()[:16]}"
        _write_private(self.folder / "rejected" / f"{name}.record", encode(record))
        _write_private(self.folder / "rejected" / f"{name}.reason.txt",
                       f"one row takes {size:,} bytes in the spool, more than storage.spool_max_bytes "
                       f"({self.max_bytes:,})\n".encode())
        metrics.SPOOL_REJECTED.inc()
        _log.warning("spool: a row larger than the whole spool (%d bytes, the cap is %d) was set aside in "
                     "rejected/%s.record", size, self.max_bytes, name)

    def pending(self) -> Iterator[tuple[Position, Record]]:
        """Records not yet acknowledged, oldest first, each with the position just after it."""
        for segment in self._segments():
            if segment < self._acked.segment:
                continue
            start = self._acked.offset if segment == self._acked.segment else 0
            with open(self._path(segment), "rb") as f:
                for position, payload in self._scan(f, segment, start):
                    yield position, decode(payload)

    def ack(self, position: Position) -> None:
        """Everything before `position` is stored: remember that, and delete finished segments."""
        self._write_acked(position)
        self.records -= 1
        for segment in self._segments():
            if segment < position.segment or (
                    segment == position.segment and position.offset >= self._path(segment).stat().st_size):
                if segment == self._current:  # drained: the next append starts a new segment
                    self.close()
                    self._current += 1
                self._path(segment).unlink()
        self._update_metrics()

    def reject(self, position: Position, record: Record, reason: str) -> None:
        """Set a record ClickHouse refused aside in `rejected/` (with why), then acknowledge it."""
        name = f"{position.segment:012d}-{position.offset}"
        _write_private(self.folder / "rejected" / f"{name}.record", encode(record))
        _write_private(self.folder / "rejected" / f"{name}.reason.txt", (reason + "\n").encode())
        metrics.SPOOL_REJECTED.inc()
        self.ack(position)

    def status(self) -> dict[str, object]:
        """What the spool holds, for `ictwatch spool status`."""
        records = rows = 0
        for _, record in self.pending():
            records += 1
            rows += record.activity.num_rows
        return {"folder": str(self.folder), "records": records, "rows": rows, "bytes": self.bytes(),
                "max_bytes": self.max_bytes, "torn_found_now": self.torn,
                "torn_kept": len(list(self.folder.glob("torn-*.bin"))),
                "rejected": len(list((self.folder / "rejected").glob("*.record")))}

    def close(self) -> None:
        """Close the segment being appended to."""
        if self._out is not None:
            os.close(self._out)
            self._out = None
