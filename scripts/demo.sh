#!/usr/bin/env bash
# Runs the whole product on one machine with no services: SQLite, a Celery worker (with beat)
# on the filesystem broker, the web app under gunicorn, and a simulated GPU agent feeding it.
# Ctrl-C stops everything and exits 0: stopping the demo is how it ends, not a failure.
# ECOREPORT_VAR_DIR (default var/) holds the database, the logs, the spool and the agent token.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${PORT:-8000}
URL="http://127.0.0.1:${PORT}"
export DEBUG=1
unset DATABASE_URL REDIS_URL
VAR=${ECOREPORT_VAR_DIR:-var}
export ECOREPORT_VAR_DIR="$VAR"
mkdir -p "$VAR"

echo "==> Migrating the SQLite database ($VAR/ecoreport.sqlite3)"
$BIN/python manage.py migrate --noinput -v0

echo "==> Loading demo data (${DEMO_DAYS:-160} days, ${DEMO_GPUS:-16} GPUs)"
$BIN/python manage.py seed_demo --days "${DEMO_DAYS:-160}" --gpus "${DEMO_GPUS:-16}" 2>>"$VAR/seed.log"
# The agent reads its token from a file only its user can read: on its command line it would
# show in `ps` to every user of the machine.
(
  umask 077
  $BIN/python manage.py issue_agent_token --org demo --host sim-node-01 --site paris-dc \
    --team platform >"$VAR/agent-token"
)

pids=()
stop() {
  trap - EXIT INT TERM
  echo; echo "==> Stopping"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

echo "==> Starting the Celery worker and beat (log: $VAR/worker.log)"
$BIN/celery -A ecoreport worker --beat --pool=solo --loglevel=INFO \
  --schedule "$VAR/celerybeat-schedule" >"$VAR/worker.log" 2>&1 &
pids+=($!)

echo "==> Starting the web app (log: $VAR/web.log)"
$BIN/gunicorn ecoreport.wsgi --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 \
  --access-logfile - >"$VAR/web.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done

echo "==> Starting a simulated agent with 4 GPUs (log: $VAR/agent.log)"
$BIN/ecoreport-agent run --server "$URL" --token-file "$VAR/agent-token" --simulate 4 \
  --interval 10 --hostname sim-node-01 --spool "$VAR/agent-spool.db" >"$VAR/agent.log" 2>&1 &
pids+=($!)

echo "==> Keeping the seeded hosts reporting live (log: $VAR/live.log)"
$BIN/python manage.py demo_live --interval 10 --exclude sim-node-01 >"$VAR/live.log" 2>&1 &
pids+=($!)

cat <<MSG

  EcoReport is running at ${URL}/
  Sign in at ${URL}/ as  demo / demo   (an organization admin; settings at ${URL}/manage/)
  Django admin (${URL}/admin/): $BIN/python manage.py createsuperuser first
  API docs: ${URL}/api/docs/      Health: ${URL}/healthz
  Prometheus: ${URL}/metrics with the 'prometheus' token printed above (docs/integrations.md)
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
echo "A process stopped; see $VAR/*.log." >&2
exit 1
