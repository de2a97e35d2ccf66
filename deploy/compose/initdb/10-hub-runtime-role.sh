#!/bin/sh
# Runs once, when the Postgres container creates its data directory (docker-entrypoint-initdb.d): the role the
# hub connects as, no superuser, owning the database. The superuser ($POSTGRES_USER) is used only by the
# `migrate` service (DATABASE_ADMIN_URL, REGION_*_DATABASE_ADMIN_URL) to install pgvector and hand the audit
# tables to their NOLOGIN owner role (docs/deploy.md, "Database roles").
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=password="$HUB_DB_PASSWORD" --set=db="$POSTGRES_DB" <<'SQL'
CREATE ROLE hub_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'password';
ALTER DATABASE :"db" OWNER TO hub_app;
SQL
