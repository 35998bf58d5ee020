"""Observation batches: row to column, flush by size, by age (with a fixed clock), and at the end."""

from __future__ import annotations

from collector.observation import BatchBuilder, Observation, to_table


def obs(i: int) -> Observation:
    return Observation(1_781_596_200_000_000 + i, "dns", "pcap", f"t#{i}", "10.0.0.1", 5000, "10.0.0.2", 53, "udp",
                       host=f"h{i}.example", answers=["192.0.2.1"])


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_flush_by_rows_then_rest_at_the_end():
    batches: list = []
    builder = BatchBuilder(batches.append, max_rows=3, max_age_s=60, now=Clock())
    for i in range(7):
        builder.add(obs(i))
    assert [b.height for b in batches] == [3, 3]
    builder.flush()
    assert [b.height for b in batches] == [3, 3, 1] and builder.rows_emitted == 7
    assert batches[2].get_column("source_ref").to_list() == ["t#6"]


def test_flush_by_age_on_tick_and_on_add():
    clock = Clock()
    batches: list = []
    builder = BatchBuilder(batches.append, max_rows=10_000, max_age_s=1.0, now=clock)
    builder.add(obs(0))
    clock.t += 0.5
    builder.tick()
    assert batches == []
    clock.t += 0.6
    builder.tick()
    assert [b.height for b in batches] == [1]
    for i in range(63):
        builder.add(obs(i))
    clock.t += 2
    builder.add(obs(63))  # the 64th pending row checks the clock
    assert [b.height for b in batches] == [1, 64]


def test_table_types_and_time_column():
    table = to_table([obs(1)])
    assert table.column("ts").type.tz == "UTC"
    # 1781596200 s since the epoch is 07:50 UTC (08:50 BST)
    assert table.column("ts").to_pylist()[0].isoformat() == "2026-06-16T07:50:00.000001+00:00"
    assert table.column("answers").to_pylist() == [["192.0.2.1"]]
    assert table.column("dst_port").type == "uint16"


def _annotations() -> dict[str, str]:
    """Observation's field annotations as written (the compiled class no longer has them as text)."""
    import ast

    from tests.conftest import ROOT

    tree = ast.parse((ROOT / "collector" / "observation.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Observation")
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _distinct(annotation: str, i: int) -> object:
    """A value of the field's type that no other field is given (booleans: True, never the default)."""
    for name, value in (("list", [f"v{i}"]), ("bool", True), ("float", i + 0.5), ("int", i)):
        if annotation.startswith(name):
            return value
    return f"v{i}"


def test_constructor_matches_the_fields():
    """Observation's constructor is written out (see its docstring): every field is a parameter of the same
    name and default, in order, each assigned to its own attribute; list defaults are fresh lists."""
    from dataclasses import MISSING, fields

    required = ("ts_us", "kind", "source", "source_ref")
    obs = Observation(1, "dns", "pcap", "x.pcap#1")
    for f in fields(Observation):
        if f.name in required:
            continue
        expected = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        assert getattr(obs, f.name) == expected, f.name
    assert obs.answers is not Observation(1, "dns", "pcap", "x.pcap#1").answers
    given = {name: _distinct(annotation, i) for i, (name, annotation) in enumerate(_annotations().items())}
    assert list(given) == [f.name for f in fields(Observation)]
    made = Observation(**given)
    assert {f.name: getattr(made, f.name) for f in fields(Observation)} == given
    positional = Observation(*given.values())
    assert {f.name: getattr(positional, f.name) for f in fields(Observation)} == given


def test_append_to_matches_the_fields():
    """`append_to` is written out too: each field's value goes to its own column, in the fields' order."""
    from collector.observation import FIELD_NAMES

    given = {name: _distinct(annotation, i) for i, (name, annotation) in enumerate(_annotations().items())}
    columns: list[list] = [[] for _ in FIELD_NAMES]
    Observation(**given).append_to(columns)
    assert dict(zip(FIELD_NAMES, (column for (column,) in columns), strict=True)) == given


def test_frame_lists_and_types():
    """A batch has the types polars reads the Arrow schema as, and list columns keep each row's items in order,
    whether a row has none, one or several (the lists are built from their items laid end to end)."""
    import polars as pl

    from collector.observation import OBSERVATION_SCHEMA

    rows = [obs(0), obs(1), obs(2), obs(3)]
    rows[0].answers, rows[1].answers, rows[2].answers = [], ["192.0.2.1", "192.0.2.2", "2001:db8::1"], []
    rows[3].alpn, rows[1].status, rows[2].duration_s = ["h2"], 404, 1.5
    batches: list = []
    builder = BatchBuilder(batches.append, max_rows=10, max_age_s=60, now=Clock())
    for row in rows:
        builder.add(row)
    builder.flush()
    (frame,) = batches
    assert frame.schema == pl.Schema(OBSERVATION_SCHEMA)
    assert frame.get_column("answers").to_list() == [[], ["192.0.2.1", "192.0.2.2", "2001:db8::1"], [],
                                                      ["192.0.2.1"]]
    assert frame.get_column("alpn").to_list() == [[], [], [], ["h2"]]
    assert frame.get_column("rcpt_to").to_list() == [[]] * 4
    assert frame.get_column("status").to_list() == [None, 404, None, None]
    assert frame.get_column("duration_s").to_list() == [None, None, 1.5, None]
    assert frame.get_column("ts").to_list()[1].isoformat() == "2026-06-16T07:50:00.000001+00:00"
    assert pl.DataFrame(to_table(rows)).equals(frame)
