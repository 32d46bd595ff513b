#!/usr/bin/env bash
# Starts a Celery worker (both queues) and the development web server; Ctrl-C stops both.
set -euo pipefail
host="${1:-127.0.0.1}"
port="${2:-8000}"
cd "$(dirname "$0")/.."
mkdir -p var/log
.venv/bin/celery -A config worker -Q cpu,gpu -c 1 --loglevel INFO --logfile var/log/worker.log &
worker=$!
.venv/bin/celery -A config beat --loglevel INFO --logfile var/log/beat.log --schedule var/celerybeat-schedule &
beat=$!
trap 'kill $worker $beat 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
password_file=var/admin-password.txt
echo
echo "Assay is running:"
echo "  web        http://$host:$port/admin/   (API: http://$host:$port/api/v1/docs/)"
echo "  admin      user 'admin', password: $(cat "$password_file" 2>/dev/null || echo 'see ASSAY_ADMIN_PASSWORD')"
echo "  worker     log in var/log/worker.log (queues cpu, gpu)"
echo
.venv/bin/python manage.py runserver "$host:$port"
