#!/bin/sh
# The entrypoint of localhost/streamdistill-postgres (scripts/image.sh --postgres): a throw-away
# PostgreSQL 15 for scripts/kube_check.sh --overlay cluster only. Not a product image: the
# project ships no database, a deployment uses the operator's PostgreSQL (docs/deploy.md).
# At the first start: initdb in PGDATA, the role POSTGRES_USER with the password read from
# POSTGRES_PASSWORD_FILE, its database POSTGRES_DB; then PostgreSQL on every address with
# password (SCRAM) logins over TCP and trusted logins on its socket in /tmp. Arguments go to
# postgres (`-c max_connections=200`).
set -eu
bin=/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses= -k /tmp" -w start >/dev/null
  password=$(cat "$POSTGRES_PASSWORD_FILE")
  "$bin/psql" -h /tmp -U postgres -d postgres -q -v ON_ERROR_STOP=1 -v user="$POSTGRES_USER" \
    -v password="$password" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
  "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialised $PGDATA (database $POSTGRES_DB, role $POSTGRES_USER)"
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -k /tmp "$@"
