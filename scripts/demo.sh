#!/usr/bin/env bash
# Runs the whole product on one machine with no services: SQLite, a Celery worker (with beat)
# on the filesystem broker, the web app under gunicorn, and a simulated GPU agent feeding it.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${PORT:-8000}
URL="http://127.0.0.1:${PORT}"
export DEBUG=1
unset DATABASE_URL REDIS_URL
mkdir -p var

echo "==> Migrating the SQLite database (var/ecoreport.sqlite3)"
$BIN/python manage.py migrate --noinput -v0

echo "==> Loading demo data (${DEMO_DAYS:-160} days, ${DEMO_GPUS:-16} GPUs)"
$BIN/python manage.py seed_demo --days "${DEMO_DAYS:-160}" --gpus "${DEMO_GPUS:-16}" 2>>var/seed.log
TOKEN=$($BIN/python manage.py issue_agent_token --org demo --host sim-node-01 --site paris-dc --team platform)

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "==> Stopping"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> Starting the Celery worker and beat (log: var/worker.log)"
$BIN/celery -A ecoreport worker --beat --pool=solo --loglevel=INFO \
  --schedule var/celerybeat-schedule >var/worker.log 2>&1 &
pids+=($!)

echo "==> Starting the web app (log: var/web.log)"
$BIN/gunicorn ecoreport.wsgi --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 \
  --access-logfile - >var/web.log 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done

echo "==> Starting a simulated agent with 4 GPUs (log: var/agent.log)"
$BIN/ecoreport-agent run --server "$URL" --token "$TOKEN" --simulate 4 --interval 10 \
  --spool var/agent-spool.db >var/agent.log 2>&1 &
pids+=($!)

cat <<MSG

  EcoReport is running at ${URL}/
  Sign in at ${URL}/ as  demo / demo   (Django admin: ${URL}/admin/)
  API docs: ${URL}/api/docs/      Health: ${URL}/healthz
  Prometheus: ${URL}/metrics with the 'prometheus' token printed above (docs/integrations.md)
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
echo "A process stopped; see var/*.log." >&2
exit 1
