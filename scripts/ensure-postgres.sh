#!/usr/bin/env bash
# Print the DSN of a PostgreSQL server the tests can use, starting one if there is none.
#
#   1. POBOX_TEST_PG set: that is the server.
#   2. Something answers on 127.0.0.1:5432 (pg_isready): postgresql://postgres@127.0.0.1:5432/postgres
#   3. Else: install Debian's postgresql if its binaries are missing, and start a throwaway
#      cluster (trust authentication, 127.0.0.1 only) in a temporary directory on another port,
#      as the user postgres when run as root. A cluster this script started earlier is reused.
#
# Only the DSN goes to standard output; what the script does goes to standard error.
# POBOX_PG_PROBE=skip pretends that nothing answers on 5432 (to test the third path);
# POBOX_PG_PORT chooses the throwaway cluster's port (default 55432).
set -euo pipefail

say() { echo "ensure-postgres: $*" >&2; }

if [ -n "${POBOX_TEST_PG:-}" ]; then
    echo "$POBOX_TEST_PG"
    exit 0
fi

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    echo "$dir"
}

answers() {  # answers PORT: a PostgreSQL server accepts connections on 127.0.0.1:PORT
    local isready
    isready=$(command -v pg_isready || true)
    [ -z "$isready" ] && [ -n "$(pg_bin)" ] && isready="$(pg_bin)/pg_isready"
    [ -n "$isready" ] || return 1
    "$isready" -q -h 127.0.0.1 -p "$1" -t 3
}

if [ "${POBOX_PG_PROBE:-}" != "skip" ] && answers 5432; then
    echo "postgresql://postgres@127.0.0.1:5432/postgres"
    exit 0
fi

port="${POBOX_PG_PORT:-55432}"
dir="${TMPDIR:-/tmp}/pobox-postgres-$port"
dsn="postgresql://postgres@127.0.0.1:$port/postgres"

if answers "$port"; then
    say "reusing the cluster on port $port"
    echo "$dsn"
    exit 0
fi

bin=$(pg_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    say "installing postgresql"
    if [ "$(id -u)" -ne 0 ]; then
        say "PostgreSQL is not installed and this is not root: install postgresql or set POBOX_TEST_PG"
        exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    bin=$(pg_bin)
fi

# initdb and postgres refuse to run as root: run them as the user postgres then
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ ! -f "$dir/PG_VERSION" ]; then
    say "creating a throwaway cluster in $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    as_owner "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >&2 \
        || as_owner "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 >&2
fi

say "starting PostgreSQL on 127.0.0.1:$port"
as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=300" \
    start >&2 || { cat "$dir/server.log" >&2; exit 1; }
echo "$dsn"
