"""Collector: packets and logs in, Observations out. Imports no other ictwatch package.

Process-wide settings live here because every entry point imports this package first:
- numpy, which pyarrow loads, would start an OpenBLAS thread per core that spins while idle; nothing
  here does linear algebra, and on a two-core gateway those threads take CPU from the decoder. The limit
  must be in the environment before numpy is imported.
- `ALLOCATORS`: how the memory allocators of the libraries loaded (each brings its own) hand freed
  memory back to the system, read from the environment when each library loads.
- `tune_gc()`, for commands that decode: see its docstring.
"""

import gc
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ALLOCATORS = {
    "ARROW_DEFAULT_MEMORY_POOL": "jemalloc",
    "JE_ARROW_MALLOC_CONF": "dirty_decay_ms:1000,muzzy_decay_ms:1000",
    "JE_MALLOC_CONF": "dirty_decay_ms:1000",
}
"""Each measured (docs/performance.md, Memory); a variable already in the environment is left as it is,
so a gateway short of memory can give up CPU for it (0 rather than 1000 in all three, and
`_RJEM_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0` for polars': a replay peaks about 60 MB lower but
takes about 12% more CPU).
- ARROW_DEFAULT_MEMORY_POOL and JE_ARROW_MALLOC_CONF: pyarrow's jemalloc pool, which hands freed memory
  back within a second, rather than its default mimalloc one, which kept 40 MB more at a replay's peak.
- JE_MALLOC_CONF, the embedded ClickHouse's jemalloc: freed pages go back after 1 s rather than the 5 s
  ClickHouse sets for a server of its own."""
for _name, _value in ALLOCATORS.items():
    os.environ.setdefault(_name, _value)


def compiled() -> bool:
    """Whether the packet decoder runs compiled by mypyc (`scripts/build-accel.sh`), about 7x the pure
    Python one's packets per second, rather than as pure Python."""
    from collector.packet import packets

    return (packets.__file__ or "").endswith(".so")


def compiled_sources() -> list[Path]:
    """The source files mypyc compiles: every module of `collector/packet/`, and the `collector` modules
    outside it that those import (the file-type rule, the observation type and the skip counter, used per
    packet)."""
    import ast  # at build time only: every command imports this package first

    here = Path(__file__).parent
    packet = sorted(p for p in (here / "packet").glob("*.py") if p.name != "__init__.py")
    outside: set[str] = set()
    for path in packet:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").count(".") == 1:
                package, name = (node.module or "").split(".")
                if package == "collector" and (here / f"{name}.py").exists():
                    outside.add(name)
    return packet + [here / f"{name}.py" for name in sorted(outside)]


def tune_gc() -> None:
    """Freeze what start-up made (modules, config, category lists) out of the collector's way and collect
    far less often: decoding makes and drops small tuples and flows by the million, almost none of them
    in reference cycles. With the defaults the collector spent a tenth of the decoder's time re-scanning
    long-lived flows; at (10000, 10, 10) still 6% (measured with `perf` on the benchmark's mix)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
