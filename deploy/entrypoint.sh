#!/bin/sh
# Start one role of the hub. Every role reads its configuration from the environment (docs/deploy.md).
#   web               gunicorn (deploy/gunicorn.conf.py)
#   worker            a Celery worker on $CELERY_QUEUES, with its metrics exporter on $WORKER_METRICS_PORT
#   beat              the Celery beat scheduler (run exactly one)
#   migrate           migrate the control database and every region database, then exit
#   manage ARGS...    any management command, e.g. `manage check --deploy`
set -eu

role="${1:-web}"
[ "$#" -gt 0 ] && shift

# prometheus_client multi-process mode keeps one file per process in this directory. Files left by a
# previous run of this container would be summed into the new one, so start from an empty directory.
reset_metrics_dir() {
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
    fi
}

case "$role" in
    web)
        reset_metrics_dir
        exec gunicorn hub.wsgi --config /app/deploy/gunicorn.conf.py "$@"
        ;;
    worker)
        reset_metrics_dir
        if [ -n "${WORKER_METRICS_PORT:-}" ]; then
            python /app/deploy/metrics_exporter.py --port "$WORKER_METRICS_PORT" &
        fi
        exec celery -A celery_worker worker \
            --queues "${CELERY_QUEUES:-default}" \
            --concurrency "${CELERY_CONCURRENCY:-2}" \
            --hostname "${CELERY_QUEUES:-default}@%h" \
            --loglevel "${LOG_LEVEL:-INFO}" \
            --without-mingle --without-gossip \
            "$@"
        ;;
    beat)
        # The schedule state file is scratch space: the schedule itself lives in settings and the database.
        exec celery -A celery_worker beat --loglevel "${LOG_LEVEL:-INFO}" \
            --schedule /tmp/celerybeat-schedule "$@"
        ;;
    migrate)
        exec python manage.py migrate --noinput "$@"
        ;;
    manage)
        exec python manage.py "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
