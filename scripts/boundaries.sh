#!/usr/bin/env bash
# The dependency rules of docs/architecture.md, each checked with cargo tree (the reason for each
# rule is printed when it breaks, and written out in docs/architecture.md):
# - the trust core (attest, policy, colenc, cas, las, runtime) and formats never depend on the
#   analytics stack;
# - attest needs no async runtime and no network;
# - the runtime (the measured workload's launcher) links the CAS and LAS clients only: no server
#   stack, no embedded store, no certificate authority, no token signing; so do the CAS and LAS
#   clients (cloister-cas, cloister-las without `server`);
# - the engine and sqldb never depend on the CAS, the LAS, the runtime or the roles; the engine
#   links no SQL-database driver (those are cloister-sqldb, beside it);
# - the roles take no CLI parser and no service;
# - the measured workload (cloister-cli) holds no demo, bench or generator code;
# - datagen needs no query engine and no terminal UI;
# - cloister-testkit and cloister-demo are leaves: no crate depends on them (the testkit only as a
#   dev-dependency), and the testkit stands up the trust core only;
# - one copy of each core crate (arrow, parquet, datafusion, object_store, tonic, rustls, prost);
#   `--depth 0` lists only the duplicated crates themselves, not every crate above them.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
members=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json,sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
check() { # crate, forbidden-regex, why, [extra cargo tree options]
  local crate=$1 forbidden=$2 why=$3
  shift 3
  grep -qx "$crate" <<<"$members" || return 0
  local hits
  hits=$(cargo tree --locked -p "$crate" "$@" -e normal --prefix none 2>/dev/null | awk '{print $1}' | grep -Ex "$forbidden" | sort -u || true)
  if [ -n "$hits" ]; then
    echo "boundary broken: $crate depends on $(echo $hits | tr '\n' ' ')($why)" >&2
    fail=1
  fi
}
analytics='datafusion.*|arrow.*|parquet|object_store'
check cloister-attest "$analytics|tokio|hyper|reqwest|mio" "attest is pure: no analytics, no async runtime, no network"
for c in cloister-policy cloister-colenc cloister-formats cloister-cas cloister-las cloister-runtime; do
  check "$c" "$analytics" "the trust core never depends on the analytics stack"
done
# The test harnesses (a dev-dependency of every crate's tests) stand up the trust core only.
check cloister-testkit "$analytics" "the testkit stands up the trust core, not the analytics stack" --all-features
check cloister-engine "cloister-sqldb|rusqlite|libsqlite3-sys|tokio-postgres" "SQL databases are cloister-sqldb, a table-provider crate beside the engine"
# The measured workload (the `cloister` executable a policy pins) holds no demo, benchmark or
# data-generator code: editing those must not change a pinned measurement.
check cloister-cli "cloister-demo|cloister-datagen|hdrhistogram|indicatif" "the measured workload holds no demo, bench or generator code"
servers='redb|axum|axum-server|utoipa|rcgen|jsonwebtoken|governor|cloister-colenc'
check cloister-runtime "$servers" "the runtime links the CAS and LAS clients, not their servers"
check cloister-cas "$servers" "the CAS client (no \`server\` feature) links no server stack" --no-default-features
check cloister-las "$servers|backon|tempfile" "the LAS client (no \`server\` feature) links no server stack" --no-default-features
for c in cloister-engine cloister-sqldb; do
  check "$c" "cloister-(cas|las|runtime|roles|policy)" "the engine and its table providers know nothing of attestation: roles wire them"
done
check cloister-roles "clap|redb|axum|axum-server" "a role is library code run inside the TEE: no CLI parser, no service"
check cloister-datagen "datafusion.*|indicatif|console" "the data generator writes files: no query engine, no terminal UI (progress is a callback)"
for c in $members; do
  case "$c" in cloister-testkit | cloister-demo | cloister-fuzz) continue ;; esac
  check "$c" "cloister-testkit|cloister-demo" "the testkit and the demo are leaves: shipped crates never link them"
done
dups=$(cargo tree --locked -d --depth 0 -e normal --prefix none 2>/dev/null | grep -E '^(arrow|parquet|datafusion|object_store|tonic|rustls|prost) v' | sort -u || true)
if [ -n "$dups" ]; then
  echo "two copies of a core crate:" >&2; echo "$dups" >&2; fail=1
fi
[ $fail = 0 ] && echo "boundaries: ok"
exit $fail
