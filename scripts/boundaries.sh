#!/usr/bin/env bash
# The dependency rules of STYLE.md, checked with cargo tree:
# - the trust core (attest, policy, cas, runtime) never depends on the analytics stack;
# - attest needs no async runtime and no network;
# - the engine links no SQL-database driver (those are cloister-sqldb, beside it);
# - one copy of each core crate (arrow, parquet, datafusion, object_store, tonic, rustls, prost);
#   `--depth 0` lists only the duplicated crates themselves, not every crate above them.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
members=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json,sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
check() { # crate, forbidden-regex, why, [more cargo tree flags]
  local crate=$1 forbidden=$2 why=$3 flags=${4:-}
  grep -qx "$crate" <<<"$members" || return 0
  local hits
  # shellcheck disable=SC2086 # $flags is a list of flags
  hits=$(cargo tree --locked -p "$crate" $flags -e normal --prefix none 2>/dev/null | awk '{print $1}' | grep -Ex "$forbidden" | sort -u || true)
  if [ -n "$hits" ]; then
    echo "boundary broken: $crate depends on $(echo $hits | tr '\n' ' ')($why)" >&2
    fail=1
  fi
}
analytics='datafusion.*|arrow.*|parquet|object_store'
check cloister-attest "$analytics|tokio|hyper|reqwest|mio" "attest is pure: no analytics, no async runtime, no network"
for c in cloister-policy cloister-cas cloister-runtime cloister-colenc cloister-formats; do
  check "$c" "$analytics" "the trust core never depends on the analytics stack"
done
# The test harnesses (a dev-dependency of every crate's tests) stand up the trust core only.
check cloister-testkit "$analytics" "the testkit stands up the trust core, not the analytics stack" --all-features
check cloister-engine "cloister-sqldb|rusqlite|libsqlite3-sys|tokio-postgres" "SQL databases are cloister-sqldb, a table-provider crate beside the engine"
dups=$(cargo tree --locked -d --depth 0 -e normal --prefix none 2>/dev/null | grep -E '^(arrow|parquet|datafusion|object_store|tonic|rustls|prost) v' | sort -u || true)
if [ -n "$dups" ]; then
  echo "two copies of a core crate:" >&2; echo "$dups" >&2; fail=1
fi
[ $fail = 0 ] && echo "boundaries: ok"
exit $fail
