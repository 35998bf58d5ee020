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


def _text(df: pl.DataFrame, name: str) -> pl.Expr:
    """A text (or list of texts, joined by a unit separator) column as the hash reads it; missing is ""."""
    col = pl.col(name)
    if isinstance(df.schema[name], pl.List):
        col = col.cast(pl.List(pl.String)).list.join("\x1f")
    col = col.cast(pl.String)
    if name == "host":
        col = pl.when(pl.col("kind").cast(pl.String) == "flow").then(pl.lit("")).otherwise(col)
    return col.fill_null("")


def record_ids(df: pl.DataFrame) -> pl.Series:
    """`record_id` of each row of `df` (an engine batch or rows read back from the store)."""
    texts = [n for n in IDENTITY if not (df.schema[n].is_numeric() or df.schema[n].is_temporal()
                                         or df.schema[n] == pl.Boolean)]
    hashed = df.select([_text(df, n).alias(n) for n in texts]).select(
        [plh.col(n).nchash.xxhash64().alias(n) for n in texts])
    h = np.zeros(df.height, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in IDENTITY:
            value = hashed.get_column(name).to_numpy() if name in texts else _mix(_number(df.get_column(name)))
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


def _number(column: pl.Series) -> np.ndarray:
    """A number column as unsigned 64-bit words: times in microseconds, floats by their bits, missing as _NULL."""
    if column.dtype == pl.Datetime:
        column = column.dt.epoch("us")
    if column.dtype == pl.Float64:
        words = column.fill_null(0.0).to_numpy().view(np.uint64)
    else:
        words = column.cast(pl.Int64).fill_null(0).to_numpy().astype(np.int64).view(np.uint64)
    return np.where(column.is_null().to_numpy(), _NULL, words)
