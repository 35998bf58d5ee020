#!/usr/bin/env bash
# Compiles the collector's decoding modules with mypyc (same source, C extension modules) when a C
# compiler and the Python headers are there; otherwise the collector runs as pure Python. Rebuilds when
# any module is newer than its compiled form, so an edit is never shadowed by a stale build.
# ICTWATCH_PURE_PYTHON=1 removes the compiled modules and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
who=${DEV_SAY:-build-accel}  # ./dev sets DEV_SAY=dev so that its phase lines share one name
py=${PYTHON_BIN:-.venv/bin/python}
# What is compiled is the folder collector/packet/ and the collector modules it imports (compiled_sources).
mapfile -t sources < <("$py" -c 'import os, collector
print("\n".join(os.path.relpath(p) for p in collector.compiled_sources()))')
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
installed="$site/ictwatch-accel.txt"  # names the shared library this script put there, and nothing else
clean() {
  rm -f collector/*.so collector/*/*.so ./*__mypyc*.so
  if [ -f "$installed" ]; then rm -f "$site/$(cat "$installed")" "$installed"; fi
}
if [ "${ICTWATCH_PURE_PYTHON:-}" = 1 ]; then clean; exit 0; fi
if ! command -v gcc >/dev/null || ! "$py" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  echo "$who: no C compiler or Python headers: the collector runs as pure Python" >&2
  clean; exit 0
fi
# Stale when a module has no compiled form, or is newer than the last build. The build is dated by
# `$installed` (in the venv, so a new venv always builds), not by the modules' .so files: those are small
# shims into mypyc's shared library that setuptools copies out of build/ with their old times whenever
# their C code did not change, which is after most edits.
stale=0
for src in "${sources[@]}"; do
  so=$(ls "${src%.py}".cpython-*.so 2>/dev/null | head -1 || true)
  if [ -z "$so" ] || [ "$src" -nt "$installed" ]; then stale=1; fi
done
[ $stale = 0 ] && exit 0
echo "$who: compiling the packet decoder with mypyc (about a minute)…" >&2
clean
mkdir -p build
started=build/mypyc.started; touch "$started"  # a module edited while mypyc runs is stale afterwards
if ! "$py" -m mypyc "${sources[@]}" > build/mypyc.log 2>&1; then
  echo "$who: mypyc failed (build/mypyc.log); the collector runs as pure Python" >&2
  tail -5 build/mypyc.log >&2
  clean; exit 0
fi
# mypyc's shared library is a top-level module: it goes where every entry point of the venv finds it.
lib=$(basename ./*__mypyc*.so)
mv "./$lib" "$site/$lib"
echo "$lib" > "$installed"
touch -r "$started" "$installed"
