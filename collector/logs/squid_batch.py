"""Squid native-format lines parsed a chunk at a time, in polars (Rust), straight into Arrow batches.

The per-line parser in `collector.logs.squid` is the reference: for every line this module gives the same
Observation fields (tested on the real logs and on generated ones), or counts it as `bad_squid_line`
where the reference would raise (as `time_out_of_range` where it refuses the line's time). Lines are
split into fields at runs of whitespace (a regular expression per line cost three times as much), each
field's shape is checked as the reference checks it, and host and port are taken from the URL by a
regular expression, as `urllib.parse.urlsplit` does for the URLs Squid logs, once for each distinct
scheme and authority. The file type is the rule of
`collector.filetypes`: the name's extension in polars (a call into Python for each URL would cost more
than the rest of the parse), the content type's by that module itself, once for each distinct type.
Whether a line is a blocked attempt is `collector.logs.refusal.refused` itself, asked once for each
distinct result code and status.
`parsed_chunks` parses several chunks at once on threads of their own. A line not in the native layout is
handed to the other formats' line parsers (`run_chunks`), so that a log that mixes in squidGuard's lines
gives them too.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import polars as pl
import pyarrow.compute as pc

from collector.filetypes import MAX_NAME, PACKAGE_NAMES, content_extension
from collector.logs.lines import Skip, blocks
from collector.logs.refusal import refused
from collector.logs.squid import BAD_SQUID_LINE
from collector.observation import (
    EARLIEST_US,
    LATEST_US,
    OBSERVATION_SCHEMA,
    TIME_OUT_OF_RANGE,
    Observation,
    TimeOutOfRange,
    to_table,
)

CHUNK = 8 << 20
"""Bytes of log read and parsed at a time (whole lines; `collector.logs.lines.blocks` cuts them)."""

_LINE = (r"^\s*(?P<ts>\d+(?:\.\d*)?|\.\d+)\s+(?P<elapsed>-?\d+)\s+(?P<client>[0-9A-Fa-f:.]+)\s+"
         r"(?P<action>[^/\s]*)/(?P<status>\d+)\s+(?P<size>\d+)\s+(?P<method>\S+)\s+(?P<url>\S+)\s+"
         r"(?P<user>\S+)\s+(?P<hierarchy>\S+)\s+(?P<ctype>\S+)")
_TS = r"^(?:\d+(?:\.\d*)?|\.\d+)$"
_URL = r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?:[^@/?#]*@)?(?P<host>\[[^\]/?#]*\]|[^:/?#]*)(?::(?P<port>\d*))?"
_IP = r"^[0-9a-fA-F:.]+$"
_BLANK = r"^[ \t\n\v\f\r]*$"  # `lines.is_blank`: ASCII white space only (Python's `bytes.strip`)
_SCHEME_AND_AUTHORITY = r"^([A-Za-z][A-Za-z0-9+.\-]*://[^/]*)/.*$"  # up to the slash after the authority
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
_HAS_PATH = r"^(?:[^/?#]*://[^/?#]*)?/"  # an absolute URL with a path, or a path: what can name a file
_QUERY = r"[?#].*$"
_DIRECTORIES = r"^.*/"  # the path up to its last slash: what is left is the last segment, as filetypes finds it
_EXTENSION = r"\.([A-Za-z0-9]{1,10})$"  # after the name's last dot, to its end


def parse_chunk(block: bytes, first: int, name: str) -> tuple[pl.DataFrame, list[int], list[int]]:
    """Observation table for the lines of `block` (numbered from `first`), the numbers of the bad lines, and
    those of the lines whose time the store cannot hold (`collector.observation.TimeOutOfRange`). Blank
    lines are none of them.

    Lines are split into fields at whitespace, a run of it counting as one (Squid pads the elapsed
    time), by `_split_plain` for a block of printable ASCII (Squid escapes URLs: its logs are) and by
    `_split_lines` otherwise; a block holding a NUL byte takes `_parse_lines`. A line whose fields do not
    have the shapes the reference parser demands is bad."""
    if b"\x00" in block:
        return _parse_lines(block.decode("utf-8", "replace").split("\n")[:-1], first, name)
    plain = not block.translate(None, _PRINTABLE)  # nothing but printable ASCII and line ends
    split = _split_plain(block, first) if plain else _split_lines(_lines(block, first))
    f = [pl.col(f"field_{i}") for i in range(10)]
    ok = (f[0].str.contains(_TS) & f[1].str.contains(r"^-?\d+$") & f[2].str.contains(_IP)
          & f[3].str.contains(r"^[^/]*/\d+$") & f[4].str.contains(r"^\d+$") & f[9].is_not_null()).fill_null(False)
    checked = split.with_columns(ok=ok)
    bad = checked.filter(~pl.col("ok")).get_column("n").to_list()
    action_status = f[3].str.split_exact("/", 1)
    good = checked.filter("ok").select(
        "n", ts=f[0], elapsed=f[1], client=f[2], action=action_status.struct.field("field_0"),
        status=action_status.struct.field("field_1"), size=f[4], method=f[5], url=f[6], user=f[7], hierarchy=f[8],
        ctype=f[9])
    return _dated(good, name, bad)


_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\n"
def _lines(block: bytes, first: int) -> pl.DataFrame:
    """(n, line) for each line of `block`, read by polars' CSV reader with NUL as the separator (no line
    holds one)."""
    return pl.read_csv(io.BytesIO(block), has_header=False, separator="\x00", quote_char=None,
                       new_columns=["line"], schema={"line": pl.String}, encoding="utf8-lossy",
                       ).with_row_index("n", offset=first)


def _split_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """(n, field_0 .. field_9) of each non-blank line: every run of whitespace made one space, then split."""
    line = pl.col("line").str.replace_all(r"\s{2,}|[\t\n\v\f\r]", " ").str.strip_chars(" ")
    return _fields(lines, pl.when(line != "").then(line.str.split(" ")))


def _split_plain(block: bytes, first: int) -> pl.DataFrame:
    """`_split_lines` for a block of printable ASCII, where whitespace is spaces: split at each, and the
    empty strings between spaces of a run dropped (half the time of making the runs single first)."""
    return _fields(_lines(block, first), pl.col("line").str.split(" ").list.eval(
        pl.element().filter(pl.element() != "")))


def _fields(lines: pl.DataFrame, split: pl.Expr) -> pl.DataFrame:
    """The first ten of each non-blank line's fields (`split`: a list of them; a line it finds none in is bad)."""
    return lines.filter(~pl.col("line").str.contains(_BLANK)).select("n", f=split).select(
        "n", *(pl.col("f").list.get(i, null_on_oob=True).alias(f"field_{i}") for i in range(10)))


def _parse_lines(lines: list[str], first: int, name: str) -> tuple[pl.DataFrame, list[int], list[int]]:
    """`parse_chunk` for lines already decoded, with one regular expression per line (slower: used for a
    block that holds a NUL byte)."""
    df = pl.DataFrame({"line": lines}, schema={"line": pl.String}).with_row_index("n", offset=first)
    df = df.filter(~pl.col("line").str.contains(_BLANK))
    fields = df.with_columns(f=pl.col("line").str.extract_groups(_LINE)).unnest("f")
    bad = fields.filter(pl.col("ts").is_null()).get_column("n").to_list()
    good = fields.filter(pl.col("ts").is_not_null())
    return _dated(good, name, bad)


def _dated(good: pl.DataFrame, name: str, bad: list[int]) -> tuple[pl.DataFrame, list[int], list[int]]:
    """`parse_chunk`'s answer for the lines of good shape (`good`) and the bad ones: those dated where the store
    can hold them become observations, the others are listed apart, as `seconds_to_us` refuses them."""
    dated = pl.col("ts").cast(pl.Float64).is_between(EARLIEST_US / 1e6, LATEST_US / 1e6)
    late = good.filter(~dated).get_column("n").to_list()
    return _observations(good.filter(dated), name), bad, late


def _observations(df: pl.DataFrame, name: str) -> pl.DataFrame:
    # Host and port come from a URL's scheme and authority (all of a CONNECT's host:port), and a log names
    # few of those: they are worked out once each and looked up.
    keyed = (df.with_columns(key=pl.col("url").str.replace(_SCHEME_AND_AUTHORITY, "$1"))
             .join(_refusals(df), on=["action", "status"], how="left", maintain_order="left")
             .join(_named(df), on="n", how="left", maintain_order="left")
             .join(_sent(df), on="ctype", how="left", maintain_order="left"))
    where = keyed.select(pl.col("key").unique()).with_columns(_host_port(pl.col("key")))
    peers = df.select(pl.col("hierarchy").unique())
    peers = peers.with_columns(peer=_peer(pl.col("hierarchy")))
    status = pl.col("status").cast(pl.Int64)
    columns = {
        "ts": (pl.col("ts").cast(pl.Float64) * 1_000_000).round().cast(pl.Int64).cast(pl.Datetime("us", "UTC")),
        "kind": pl.lit("proxy"), "source": pl.lit("squid"),
        "source_ref": pl.lit(f"{name}:") + pl.col("n").cast(pl.String),
        "src_ip": pl.col("client"),
        "dst_ip": pl.col("hierarchy").replace_strict(peers["hierarchy"], peers["peer"], return_dtype=pl.String),
        "dst_port": pl.col("key").replace_strict(where["key"], where["port"], return_dtype=pl.Int64),
        "proto": pl.lit("tcp"),
        "host": pl.col("key").replace_strict(where["key"], where["host"], return_dtype=pl.String),
        "url": pl.col("url"), "method": pl.col("method"),
        "status": pl.when(status == 0).then(None).otherwise(status),
        "content_type": pl.when(pl.col("ctype") == "-").then(None).otherwise(pl.col("ctype").str.to_lowercase()),
        "file_ext": pl.when(pl.col("sent").is_null() | pl.col("named").is_in(sorted(PACKAGE_NAMES)))
        .then(pl.col("named")).otherwise(pl.col("sent")),
        "bytes_in": pl.col("size").cast(pl.Int64),
        "duration_s": pl.max_horizontal(pl.col("elapsed").cast(pl.Int64), pl.lit(0)).cast(pl.Float64),
        "proxy_user": pl.when(pl.col("user") == "-").then(None).otherwise(pl.col("user")),
        "proxy_action": pl.col("action"), "denied": pl.col("refused"),
    }
    exprs = []
    for field, dtype in OBSERVATION_POLARS.items():
        if field in columns:
            exprs.append(columns[field].cast(dtype).alias(field))
        else:  # the Observation's own default: False for flags, None (or []) for what may be unknown
            exprs.append(pl.lit(_DEFAULTS[field], dtype=dtype).alias(field))
    out = keyed.select(exprs)
    # milliseconds until here: divided in Arrow, whose division is correctly rounded as Python's `/` is
    # (polars multiplies by the reciprocal, one unit in the last place off on about one value in eight)
    seconds = pc.divide(out.get_column("duration_s").to_arrow(), _THOUSAND)
    return out.with_columns(pl.Series("duration_s", seconds))


def _refusals(df: pl.DataFrame) -> pl.DataFrame:
    """(action, status, refused) for each distinct result code and status of the lines: `refused` asked
    about each (a log holds a few dozen of them)."""
    pairs = df.select("action", "status").unique()
    flags = [refused(action, int(status) or None) for action, status in pairs.iter_rows()]
    return pairs.with_columns(refused=pl.Series(flags, dtype=pl.Boolean))


def _named(df: pl.DataFrame) -> pl.DataFrame:
    """(n, named) for the lines whose URL has a path: the extension `collector.filetypes` finds in the name at
    its end (a CONNECT's host:port, about half of a school's lines, names none and is not looked at)."""
    name = pl.col("url").str.replace(_QUERY, "").str.replace(_DIRECTORIES, "")
    paths = df.select("n", "url").filter(pl.col("url").str.contains(_HAS_PATH)).with_columns(name=name)
    ext = pl.col("name").str.extract(_EXTENSION, 1).str.to_lowercase()
    return paths.select("n", named=pl.when((pl.col("name").str.len_chars() <= MAX_NAME)
                                           & ~pl.col("name").str.starts_with(".")).then(ext))


def _sent(df: pl.DataFrame) -> pl.DataFrame:
    """(ctype, sent) for each distinct content type of the lines (a log holds a few dozen): the extension
    `collector.filetypes.content_extension` gives it."""
    types = df.select(pl.col("ctype").unique())
    sent = [content_extension(None if t == "-" else t) for t in types.get_column("ctype").to_list()]
    return types.with_columns(sent=pl.Series(sent, dtype=pl.String))


def _host_port(url: pl.Expr) -> list[pl.Expr]:
    """`host` and `port` as the reference's `host_port` gives them, for a URL or a CONNECT's host:port."""
    connect = ~url.str.contains("://", literal=True)  # authority form: a CONNECT's host:port
    parts = url.str.extract_groups(_URL)
    scheme, url_host, url_port = parts.struct.field("scheme"), parts.struct.field("host"), parts.struct.field("port")
    # CONNECT host:port (or a bare authority): split at the last colon, as the reference does.
    has_colon = url.str.contains(":", literal=True)
    bare_host = pl.when(has_colon).then(url.str.replace(r":[^:]*$", "")).otherwise(url)
    bare_port = pl.when(has_colon).then(url.str.extract(r":([^:]*)$")).otherwise(None)
    bare_host = bare_host.str.strip_chars("[]").str.to_lowercase()
    pseudo = url.str.starts_with("error:")  # a transaction that never became a request
    host = pl.when(pseudo).then(None).when(connect).then(
        pl.when(bare_host == "").then(None).otherwise(bare_host)).otherwise(
        pl.when(url_host.str.strip_chars("[]") == "").then(None).otherwise(
            url_host.str.strip_chars("[]").str.to_lowercase()))
    default = scheme.str.to_lowercase().replace_strict(_DEFAULT_PORTS, default=None, return_dtype=pl.Int64)
    url_port_int = url_port.cast(pl.Int64, strict=False)
    port = pl.when(pseudo).then(None).when(connect).then(bare_port.cast(pl.Int64, strict=False)).otherwise(
        pl.when(url_port_int.is_not_null() & (url_port_int > 0) & (url_port_int <= 65535)).then(url_port_int)
        .otherwise(default))
    return [host.alias("host"), port.alias("port")]


def _peer(hierarchy: pl.Expr) -> pl.Expr:
    """The address after the slash of Squid's hierarchy code (`HIER_DIRECT/198.51.100.7`), if one."""
    peer = hierarchy.str.replace(r"^[^/]*/?", "")
    return pl.when(peer.str.contains(_IP)).then(peer).otherwise(None)


OBSERVATION_POLARS: dict[str, pl.DataType] = dict(pl.Schema(OBSERVATION_SCHEMA))
"""The observation schema as polars reads it: the batches made here have these types, as if from Arrow."""
_THOUSAND = pl.Series([1000.0]).to_arrow()[0]  # not pa.scalar(1000.0): a Python value makes pyarrow import pandas
_DEFAULTS: dict[str, object] = {
    f.name: [] if f.default_factory is list else None if f.default is dataclasses.MISSING else f.default
    for f in dataclasses.fields(Observation)}


WORKERS = min(4, os.cpu_count() or 1)
"""Chunks parsed at once: polars works outside the interpreter's lock, and one chunk's column is one
piece that most string operations walk on a single core."""


Parsed = tuple[pl.DataFrame, list[int], list[int]]
"""`parse_chunk`'s answer: the observations, the bad lines' numbers, those of the lines dated out of range."""


def parsed_chunks(stream: BinaryIO, name: str, skip: Skip) -> Iterator[Parsed]:
    """`parse_chunk` of each of the stream's chunks, `WORKERS` of them at a time, in the log's order; each
    line `lines.blocks` does not read (over `lines.MAX_LINE`, or where a gzip is cut) goes to `skip`."""
    for _first, _block, parsed in _parsed_blocks(stream, name, skip):
        yield parsed


def _parsed_blocks(stream: BinaryIO, name: str, skip: Skip) -> Iterator[tuple[int, bytes, Parsed]]:
    """(number of the block's first line, block, `parse_chunk` of it) for `parsed_chunks`."""
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="squid-parse") as pool:
        pending: deque[tuple[int, bytes, Future[Parsed]]] = deque()
        for first, block in blocks(stream, skip, CHUNK):
            pending.append((first, block, pool.submit(parse_chunk, block, first, name)))
            if len(pending) > WORKERS:
                first, block, parsed = pending.popleft()
                yield first, block, parsed.result()
        while pending:
            first, block, parsed = pending.popleft()
            yield first, block, parsed.result()


def run_chunks(stream: BinaryIO, name: str, sink: Callable[[pl.DataFrame], None],
               skip: Callable[[str, int], None], stopped: Callable[[], bool],
               others: Callable[[str, str], Observation]) -> int:
    """Parse a whole log: each chunk's table goes to `sink`, each skipped line's reason and number to `skip`.
    A line not in Squid's native layout is given to `others` (the parser of the other formats' lines), and
    what it reads goes to `sink` after the chunk's table, in a table of its own; what it refuses is counted
    as `bad_squid_line`. Returns rows. The next chunks are parsed while `sink` works on one."""
    rows = 0
    for first, block, (table, bad_lines, late) in _parsed_blocks(stream, name, skip):
        if stopped():
            break
        found = _read_by_others(block, first, bad_lines, name, others, skip) if bad_lines else []
        for number in late:
            skip(TIME_OUT_OF_RANGE, number)
        for frame in (table, pl.DataFrame(to_table(found)) if found else None):
            if frame is not None and frame.height:
                sink(frame)
                rows += frame.height
    return rows


def _read_by_others(block: bytes, first: int, numbers: list[int], name: str,
                    others: Callable[[str, str], Observation], skip: Callable[[str, int], None]) -> list[Observation]:
    """The observations `others` makes of the lines of `block` numbered `numbers` (a line it refuses is
    counted as `bad_squid_line`, or as `time_out_of_range` where that is why)."""
    lines = block.split(b"\n")
    found = []
    for number in numbers:
        try:
            found.append(others(lines[number - first].decode("utf-8", "replace"), f"{name}:{number}"))
        except TimeOutOfRange:
            skip(TIME_OUT_OF_RANGE, number)
        except ValueError:
            skip(BAD_SQUID_LINE, number)
    return found
