"""Squid native-format lines parsed a chunk at a time, in polars (Rust), straight into Arrow batches.

The per-line parser in `collector.squid` is the reference: for every line this module gives the same
Observation fields (tested on the real logs and on generated ones), or counts it as `bad_squid_line`
where the reference would raise. One regular expression splits a line into its ten fields; the URL's
host and port are taken apart by a second, as `urllib.parse.urlsplit` does for the URLs Squid logs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from collector.observation import OBSERVATION_SCHEMA, Observation

CHUNK = 8 << 20

_LINE = (r"^\s*(?P<ts>\d+(?:\.\d*)?|\.\d+)\s+(?P<elapsed>-?\d+)\s+(?P<client>[0-9A-Fa-f:.]+)\s+"
         r"(?P<action>[^/\s]*)/(?P<status>\d+)\s+(?P<size>\d+)\s+(?P<method>\S+)\s+(?P<url>\S+)\s+"
         r"(?P<user>\S+)\s+(?P<hierarchy>\S+)\s+(?P<ctype>\S+)")
_URL = r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?:[^@/?#]*@)?(?P<host>\[[^\]/?#]*\]|[^:/?#]*)(?::(?P<port>\d*))?"
_IP = r"^[0-9a-fA-F:.]+$"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def chunks(stream: BinaryIO, size: int = CHUNK) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines) for successive pieces of the stream, cut at newlines only."""
    rest = b""
    first = 1
    while True:
        data = stream.read(size)
        if not data:
            if rest:
                yield first, [rest.decode("utf-8", "replace")]
            return
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        lines = data[:cut].decode("utf-8", "replace").split("\n")
        rest = data[cut + 1 :]
        yield first, lines
        first += len(lines)


def parse_chunk(lines: list[str], first: int, name: str) -> tuple[pa.Table, list[int]]:
    """Observation table for `lines` (numbered from `first`), and the numbers of the bad lines.
    Blank lines are neither."""
    df = pl.DataFrame({"line": lines}, schema={"line": pl.String}).with_row_index("n", offset=first)
    df = df.filter(pl.col("line").str.strip_chars().str.len_chars() > 0)
    fields = df.with_columns(f=pl.col("line").str.extract_groups(_LINE)).unnest("f")
    bad = fields.filter(pl.col("ts").is_null()).get_column("n").to_list()
    good = fields.filter(pl.col("ts").is_not_null())
    return _observations(good, name), bad


def _observations(df: pl.DataFrame, name: str) -> pa.Table:
    connect = (pl.col("method") == "CONNECT") | ~pl.col("url").str.contains("://", literal=True)
    url = pl.col("url").str.extract_groups(_URL)
    scheme, url_host, url_port = url.struct.field("scheme"), url.struct.field("host"), url.struct.field("port")
    # CONNECT host:port (or a bare authority): split at the last colon, as the reference does.
    has_colon = pl.col("url").str.contains(":", literal=True)
    bare_host = pl.when(has_colon).then(pl.col("url").str.replace(r":[^:]*$", "")).otherwise(pl.col("url"))
    bare_port = pl.when(has_colon).then(pl.col("url").str.extract(r":([^:]*)$")).otherwise(None)
    bare_host = bare_host.str.strip_chars("[]").str.to_lowercase()
    pseudo = pl.col("url").str.starts_with("error:")  # a transaction that never became a request
    host = pl.when(pseudo).then(None).when(connect).then(
        pl.when(bare_host == "").then(None).otherwise(bare_host)).otherwise(
        pl.when(url_host.str.strip_chars("[]") == "").then(None).otherwise(
            url_host.str.strip_chars("[]").str.to_lowercase()))
    default = scheme.str.to_lowercase().replace_strict(_DEFAULT_PORTS, default=None, return_dtype=pl.Int64)
    url_port_int = url_port.cast(pl.Int64, strict=False)
    port = pl.when(pseudo).then(None).when(connect).then(bare_port.cast(pl.Int64, strict=False)).otherwise(
        pl.when(url_port_int.is_not_null() & (url_port_int > 0) & (url_port_int <= 65535)).then(url_port_int)
        .otherwise(default))
    peer = pl.col("hierarchy").str.replace(r"^[^/]*/?", "")
    status = pl.col("status").cast(pl.Int64)
    empty = pl.lit([], dtype=pl.List(pl.String))
    columns = {
        "ts": (pl.col("ts").cast(pl.Float64) * 1_000_000).round().cast(pl.Int64).cast(pl.Datetime("us", "UTC")),
        "kind": pl.lit("proxy"), "source": pl.lit("squid"),
        "source_ref": pl.lit(f"{name}:") + pl.col("n").cast(pl.String),
        "src_ip": pl.col("client"), "dst_ip": pl.when(peer.str.contains(_IP)).then(peer).otherwise(None),
        "dst_port": port, "proto": pl.lit("tcp"), "host": host, "url": pl.col("url"), "method": pl.col("method"),
        "status": pl.when(status == 0).then(None).otherwise(status),
        "content_type": pl.when(pl.col("ctype") == "-").then(None).otherwise(pl.col("ctype").str.to_lowercase()),
        "bytes_in": pl.col("size").cast(pl.Int64),
        # milliseconds here; divided in Arrow below, whose division is correctly rounded (polars multiplies
        # by the reciprocal, one unit in the last place off Python's `/`)
        "duration_s": pl.max_horizontal(pl.col("elapsed").cast(pl.Int64), pl.lit(0)).cast(pl.Float64),
        "proxy_user": pl.when(pl.col("user") == "-").then(None).otherwise(pl.col("user")),
        "proxy_action": pl.col("action"), "denied": pl.col("action").str.contains("DENIED", literal=True),
    }
    exprs = []
    for field in OBSERVATION_SCHEMA:
        if field.name in columns:
            exprs.append(columns[field.name].alias(field.name))
        elif pa.types.is_list(field.type):
            exprs.append(empty.alias(field.name))
        else:  # the Observation's own default: False for flags, None for what may be unknown
            exprs.append(pl.lit(_DEFAULTS[field.name]).alias(field.name))
    table = df.select(exprs).to_arrow().cast(OBSERVATION_SCHEMA)
    at = table.schema.get_field_index("duration_s")
    return table.set_column(at, "duration_s", pc.divide(table.column(at), pa.scalar(1000.0)))


_DEFAULTS = {f.name: None if f.default is dataclasses.MISSING else f.default for f in dataclasses.fields(Observation)}


def run_chunks(stream: BinaryIO, name: str, sink: Callable[[pa.Table], None],
               bad: Callable[[int], None], stopped: Callable[[], bool]) -> int:
    """Parse a whole log: each chunk's table goes to `sink`, each bad line number to `bad`. Returns rows."""
    rows = 0
    for first, lines in chunks(stream):
        if stopped():
            break
        table, bad_lines = parse_chunk(lines, first, name)
        for number in bad_lines:
            bad(number)
        if table.num_rows:
            sink(table)
            rows += table.num_rows
    return rows
