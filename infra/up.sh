#!/usr/bin/env bash
# Start the pipeline's servers on this host and wait until each answers its health check.
#   infra/up.sh [--label-studio]   MLflow (:5000), the Prefect server (:4200) and a worker on the rft pool;
#                                  Label Studio (:8080) too with --label-studio
#   infra/up.sh status             which of them answer
#   infra/up.sh down               stop what up started
# Every server binds to 127.0.0.1 (see each script for how to expose it). Their stores, logs and pid files
# live under $RFT_DATA_DIR (default: the current folder): mlruns.db, mlartifacts/, .prefect/, .label-studio/,
# .rft-services/. Ports: MLFLOW_PORT, PREFECT_PORT, LS_PORT. Startup waits at most $UP_TIMEOUT seconds each.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export RFT_DATA_DIR="${RFT_DATA_DIR:-.}"
RUN="$RFT_DATA_DIR/.rft-services"
MLFLOW_URL="http://127.0.0.1:${MLFLOW_PORT:-5000}"
PREFECT_URL="http://127.0.0.1:${PREFECT_PORT:-4200}"
LS_URL="http://127.0.0.1:${LS_PORT:-8080}"
TIMEOUT="${UP_TIMEOUT:-180}"

healthy() { curl -sf -o /dev/null --max-time 2 "$1"; }

launch() {   # name, health URL (or -), command...
  local name="$1" health="$2"; shift 2
  if [ "$health" != - ] && healthy "$health"; then echo "$name: already answering at $health"; return 0; fi
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    echo "$name: already running (pid $(cat "$RUN/$name.pid"))"; return 0
  fi
  mkdir -p "$RUN"
  set -m                                   # its own process group, so that `down` stops its children too
  nohup "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
  set +m
  [ "$health" = - ] && { echo "$name: started (log $RUN/$name.log)"; return 0; }
  local waited=0
  until healthy "$health"; do
    if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "$name: exited; last lines of $RUN/$name.log:" >&2; tail -20 "$RUN/$name.log" >&2; return 1
    fi
    if [ "$waited" -ge "$TIMEOUT" ]; then echo "$name: no answer from $health in ${TIMEOUT}s" >&2; return 1; fi
    sleep 1; waited=$((waited + 1))
  done
  echo "$name: up at $health (log $RUN/$name.log)"
}

up() {
  launch mlflow "$MLFLOW_URL/health" bash "$HERE/mlflow.sh"
  launch prefect "$PREFECT_URL/api/health" bash "$HERE/prefect.sh" server
  PREFECT_API_URL="$PREFECT_URL/api" launch prefect-worker - bash "$HERE/prefect.sh" worker
  if [ "${1:-}" = --label-studio ]; then launch label-studio "$LS_URL/health" bash "$HERE/label_studio.sh" start; fi
  cat <<MSG
Point the pipeline at them:
  params.yaml: tracking.uri: $MLFLOW_URL
  export PREFECT_API_URL=$PREFECT_URL/api
then: rft deploy   (the retrain flow on retrain.cron), or rft cycle
MSG
}

down() {
  # TERM to every process group first, then one shared wait of at most 30 s: the servers stop side by side.
  local pidfile pgid waited=0 groups=()
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    pgid="$(cat "$pidfile")"
    kill -TERM -- -"$pgid" 2>/dev/null || true          # the whole process group: server and its children
    groups+=("$pgid")
  done
  alive() { local g; for g in "${groups[@]}"; do kill -0 -- -"$g" 2>/dev/null && return 0; done; return 1; }
  while [ "${#groups[@]}" -gt 0 ] && alive && [ "$waited" -lt 60 ]; do sleep 0.5; waited=$((waited + 1)); done
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    kill -KILL -- -"$(cat "$pidfile")" 2>/dev/null || true
    echo "$(basename "$pidfile" .pid): stopped"; rm -f "$pidfile"
  done
}

status() {
  for pair in "mlflow $MLFLOW_URL/health" "prefect $PREFECT_URL/api/health" "label-studio $LS_URL/health"; do
    set -- $pair
    if healthy "$2"; then echo "$1: up ($2)"; else echo "$1: down ($2)"; fi
  done
}

case "${1:-up}" in
  up) up "${2:-}" ;;
  --label-studio) up --label-studio ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 [up] [--label-studio] | status | down" >&2; exit 2 ;;
esac
