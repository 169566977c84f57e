#!/bin/sh
# One-shot: create Temporal's two PostgreSQL databases and bring their schemas to the version the server image
# expects. Idempotent: `create` of an existing database fails harmlessly, update-schema only applies what's missing.
set -eu
: "${POSTGRES_SEEDS:=postgresql}" "${DB_PORT:=5432}" "${POSTGRES_USER:=temporal}"
export SQL_PASSWORD="${POSTGRES_PWD:?POSTGRES_PWD is required}"
schema=/etc/temporal/schema/postgresql/v12

until nc -z "$POSTGRES_SEEDS" "$DB_PORT"; do echo "waiting for PostgreSQL at $POSTGRES_SEEDS:$DB_PORT"; sleep 2; done

for db in temporal temporal_visibility; do
  sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" --db "$db" "$@"; }
  sql create || echo "database $db already exists"
  sql setup-schema -v 0.0 || echo "schema of $db already initialised"
  case "$db" in
    temporal) sql update-schema -d "$schema/temporal/versioned" ;;
    *) sql update-schema -d "$schema/visibility/versioned" ;;
  esac
done
echo "Temporal schemas are up to date"
