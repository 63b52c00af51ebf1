#!/usr/bin/env bash
# Stop only the daemons that tests/slurm/start-slurm.sh started (their pid files in $SLURMLAB_STATE,
# default /run/slurmlab); daemons it found already running are left alone.
set -uo pipefail
STATE=${SLURMLAB_STATE:-/run/slurmlab}
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  pf=$STATE/$name.pid
  [ -s "$pf" ] || continue
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/$pid/comm 2>/dev/null)" = "$name" ]; then
    echo "[stop-slurm] stopping $name (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "[stop-slurm] $name did not exit, sending KILL"; kill -KILL "$pid"
    fi
  else
    echo "[stop-slurm] $name (pid $pid) not running"
  fi
  rm -f "$pf"
done
