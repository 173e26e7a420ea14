# Sourced by scripts/test: starts a throwaway PostgreSQL cluster (the newest installed) on a free loopback port
# and exports COLEDGER_TEST_POSTGRES_URL (an admin URL; tests create a database each).
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
# The cluster is deleted when the calling shell exits.

scratch_postgres_start() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "!!!!!!!! PostgreSQL server binaries not found (apt-get install postgresql-15): PostgreSQL tests will SKIP !!!!!!!!" >&2
        return 1
    fi
    local as=()
    if [ "$(id -u)" = 0 ]; then
        as=(runuser -u postgres --)
    fi
    SCRATCH_PG_DIR=$(mktemp -d /tmp/coledger-pg.XXXXXX)
    chmod 755 "$SCRATCH_PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$SCRATCH_PG_DIR"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as[@]}" "$bin/initdb" -D "$SCRATCH_PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$SCRATCH_PG_DIR/initdb.log" 2>&1 || {
        cat "$SCRATCH_PG_DIR/initdb.log" >&2
        return 1
    }
    # Durable settings as in production (fsync, synchronous_commit on); more connections for
    # parallel tests.
    "${as[@]}" "$bin/pg_ctl" -D "$SCRATCH_PG_DIR/data" -l "$SCRATCH_PG_DIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$SCRATCH_PG_DIR -c max_connections=300 -c fsync=on -c synchronous_commit=on" \
        start >/dev/null || {
        cat "$SCRATCH_PG_DIR/server.log" >&2
        return 1
    }
    SCRATCH_PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$SCRATCH_PG_DIR/data" -m immediate stop)
    trap scratch_postgres_stop EXIT
    export COLEDGER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "scratch PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
}

scratch_postgres_stop() {
    "${SCRATCH_PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$SCRATCH_PG_DIR"
}
