"""A record's identity: what makes two rows of `activity` the same thing seen, whatever file it was read from.

An import names each record by where it was read (`source_ref`: `school-day.pcap#50`, `access.log:3`), and
the same record read again from a renamed, gzipped or rotated file, or followed live and imported later, has
another name. Its identity is therefore made from what was observed: `record_id` is a 64-bit hash of the
columns in `IDENTITY`, as they are stored (missing text is ""). Two rows that agree on all of them are one
record when they come from two inputs; from one input (one file, read in one batch) they are two, the second
copy's id mixed with its number: a proxy logs two identical 407 challenges in the same millisecond.

Stable for ever: the columns, their order and the hash are part of the stored data (a re-import compares with
ids computed by earlier versions), so none of them may change. Each text value is hashed with xxHash64
(polars-hash, whose result is the same on every version and platform, and equal to ClickHouse's `xxHash64`);
numbers with SplitMix64's finaliser; the column hashes are folded in order (h * FNV's prime + next,
wrapping) and the result finalised with SplitMix64. A flow's
`host` is left out: Suricata's and conntrack's flows are named after they are read, from the DNS answers seen
before them, so the name depends on what was imported with them; a flow is its addresses, ports, start and
counts. `url` and `user_agent` are blanked after the policy's `url_days`; a record re-imported after that is
stored again (its id was made with them).

64 bits are plenty: a row is only ever compared with the rows of its own instant (`ts` is hashed and the
look-ups are by time), so a collision needs two different records in the same microsecond.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import polars_hash as plh

IDENTITY: tuple[str, ...] = (
    "ts", "kind", "source", "src_ip", "src_port", "dst_ip", "dst_port", "proto", "src_mac", "host", "url", "method",
    "user_agent", "status", "content_type", "qtype", "rcode", "answers", "sni", "dhcp_type", "bytes_out", "bytes_in",
    "packets_out", "packets_in", "duration_s", "proxy_action", "cleartext_credentials", "filter_category",
    "filter_reason",
)
"""The `activity` columns that identify a record: what the decoder saw, nothing the policy or identity added."""

_POSITION = r"(#\d+|:\d+|@\d+:\d+)$"
"""The record's position at the end of a `source_ref` (frame, line, or rotations and offset): the rest names
the input."""
_NULL = np.uint64(0x9E3779B97F4A7C15)  # a missing number (0 is a value)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_FOLD = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: h = h * _FOLD + column hash, column by column


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, element-wise (unsigned 64-bit arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _text(schema: pl.Schema, name: str) -> pl.Expr:
    """The xxHash64 of a text (or list of texts, joined by a unit separator) column; missing is ""."""
    col = pl.col(name)
    if isinstance(schema[name], pl.List):
        col = col.cast(pl.List(pl.String)).list.join("\x1f")
    col = col.cast(pl.String)
    if name == "host":
        col = pl.when(pl.col("kind").cast(pl.String) == "flow").then(pl.lit("")).otherwise(col)
    return plh.NonCryptographicHashingNameSpace(col.fill_null("")).xxhash64()


def _number(schema: pl.Schema, name: str) -> list[pl.Expr]:
    """A number column's words (times in microseconds, floats as they are: `_words` takes their bits) and
    where it is missing."""
    col = pl.col(name)
    if schema[name] == pl.Datetime:
        col = col.dt.epoch("us")
    words = col.fill_null(0.0) if schema[name] == pl.Float64 else col.cast(pl.Int64).fill_null(0)
    return [words.alias(name), col.is_null().alias(f"{name}:null")]


def _words(columns: pl.DataFrame, name: str) -> np.ndarray:
    """A number column as unsigned 64-bit words: floats by their bits, missing as _NULL."""
    values = columns.get_column(name).to_numpy()
    words = values.view(np.uint64) if values.dtype == np.float64 else values.astype(np.int64).view(np.uint64)
    return np.where(columns.get_column(f"{name}:null").to_numpy(), _NULL, words)


def record_ids(df: pl.DataFrame) -> pl.Series:
    """`record_id` of each row of `df` (an engine batch or rows read back from the store)."""
    schema = df.schema
    texts = {n for n in IDENTITY if not (schema[n].is_numeric() or schema[n].is_temporal() or schema[n] == pl.Boolean)}
    # every column's hash or words in one pass of polars: its fixed cost is paid once a batch, not per column
    columns = df.select([e for n in IDENTITY for e in ([_text(schema, n).alias(n)] if n in texts
                                                        else _number(schema, n))])
    h = np.zeros(df.height, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in IDENTITY:
            value = columns.get_column(name).to_numpy() if name in texts else _mix(_words(columns, name))
            np.multiply(h, _FOLD, out=h)
            np.add(h, value.astype(np.uint64, copy=False), out=h)
        h = _mix(h)
        # the n-th copy of the same content from the same input is the n-th record (two identical 407 lines)
        same = pl.Series(h).is_duplicated().to_numpy()
        if same.any():  # seldom: only then is the numbering worth its cost
            copies = (pl.DataFrame({"h": h[same], "file": df.get_column("source_ref").filter(same)
                                    .str.replace(_POSITION, "")})
                      .select(pl.int_range(pl.len(), dtype=pl.UInt64).over("h", "file")).to_series().to_numpy())
            h[same] = np.where(copies == 0, h[same], _mix(h[same] ^ _mix(copies)))
    return pl.Series("record_id", h, dtype=pl.UInt64)
