"""DuckDB peer of `cloister bench taxi` (and of the DuckDB equality test).

Embedded in the `cloister` binary and run with the venv's python. It speaks JSON lines:
the first line on stdin sets up the session, every later line runs one query; each answer is
one line on stdout. Timing is taken here, around execute + fetchall, so that the pipe between
the processes is not measured.

  → {"trips": GLOB, "zones": PATH, "threads": N}
  ← {"ready": true, "duckdb": VERSION, "threads": N}
  → {"sql": TEXT, "rows": BOOL}
  ← {"ms": FLOAT, "columns": [NAME…], "rows": [[VALUE…]…] or null}
  ← {"error": TEXT}                     (a failed setup or query)
"""

import decimal
import json
import math
import sys
import time


def value(v):
    """A result value as JSON: ints stay ints, doubles stay doubles (repr round-trips)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else repr(v)
    if isinstance(v, decimal.Decimal):
        return float(v)
    return str(v)


def literal(text):
    """A SQL string literal (views take no parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


def answer(obj):
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
    sys.stdout.flush()


def main():
    try:
        import duckdb
    except ImportError as e:
        answer({"error": f"cannot import duckdb ({e}): pip install duckdb"})
        return 3
    setup = json.loads(sys.stdin.readline())
    try:
        con = duckdb.connect(":memory:")
        con.execute(f"SET threads = {int(setup['threads'])}")
        for name in ("trips", "zones"):
            con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet({literal(setup[name])})"
            )
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    except Exception as e:  # noqa: BLE001 - reported to the caller
        answer({"error": f"setup: {e}"})
        return 2
    answer({"ready": True, "duckdb": duckdb.__version__, "threads": threads})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            start = time.perf_counter()
            cursor = con.execute(request["sql"])
            rows = cursor.fetchall()
            ms = (time.perf_counter() - start) * 1000.0
            columns = [d[0] for d in cursor.description]
        except Exception as e:  # noqa: BLE001 - reported to the caller
            answer({"error": str(e)})
            continue
        answer(
            {
                "ms": ms,
                "columns": columns,
                "rows": [[value(v) for v in row] for row in rows]
                if request.get("rows")
                else None,
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
