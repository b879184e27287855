#!/usr/bin/env bash
# The CERNIQ demo lab: four Debian 12 systemd containers (podman) on their own network,
# configured by playbooks/site.yml with inventory/lab (docs/lab.md).
#
#   scripts/lab.sh up       create or reuse the network and containers, run site.yml
#   scripts/lab.sh status   containers, published addresses, Prometheus target health
#   scripts/lab.sh down     remove exactly what `up` created (containers, network)
#
# Prometheus and Alertmanager are published on 127.0.0.1 only (9090/9093, or the next
# free ports; override with CERNIQ_LAB_PROMETHEUS_PORT / CERNIQ_LAB_ALERTMANAGER_PORT).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${CERNIQ_VENV:-$ROOT/.venv}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/extensions/molecule/containers.conf}
export PATH="$VENV/bin:$PATH"
# The lab inventory's connection with pipelining (inventory/lab/hosts.yml).
export CERNIQ_LAB_CONNECTION=${CERNIQ_LAB_CONNECTION:-podman_pipelined}
export ANSIBLE_CONNECTION_PLUGINS=${ANSIBLE_CONNECTION_PLUGINS:-$ROOT/extensions/plugins/connection}

NETWORK=cerniq-lab
LABEL=cerniq.lab=1
MONITOR=cerniq-lab-monitor
REDIS=cerniq-lab-redis
WORKER=cerniq-lab-worker
CONTAINERS=(cerniq-lab-db "$REDIS" "$WORKER" "$MONITOR")

say() { printf '[lab] %s\n' "$*"; }
die() { say "$*"; exit 1; }

exists() { podman container exists "$1"; }
ours() { [ "$(podman container inspect -f '{{index .Config.Labels "cerniq.lab"}}' "$1" 2>/dev/null)" = 1 ]; }

port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

pick_port() {  # first free port from $1 upwards (20 tries)
  local p=$1
  for _ in $(seq 20); do
    if port_free "$p"; then echo "$p"; return 0; fi
    p=$((p + 1))
  done
  return 1
}

published() {  # host port the monitor publishes for container port $1
  podman port "$MONITOR" "$1/tcp" 2>/dev/null | head -n1 | sed 's/.*://'
}

wait_systemd() {
  local c=$1 state
  for _ in $(seq 60); do
    state=$(podman exec "$c" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) return 0 ;; esac
    sleep 1
  done
  die "$c: systemd did not finish booting (state: ${state:-unknown})"
}

WHEELS=$ROOT/.cache/lab-wheels
wheelhouse() {  # the lab workers' wheels, downloaded again only when their requirements change
  local req=extensions/lab/worker/requirements.txt stamp
  stamp=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$WHEELS/.stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  say "downloading the lab workers' wheels into $WHEELS"
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check -d "$WHEELS" -r "$req" \
    || die "pip download of $req failed"
  echo "$stamp" >"$WHEELS/.stamp"
}

answers() {  # podman exec works: podman can report "running" for a container whose processes are gone
  local _
  for _ in 1 2 3 4 5; do
    podman exec "$1" true >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

reusable() {  # an existing lab container $1 is kept when it runs image $2 and answers
  local c=$1 image=$2
  if [ "$(podman container inspect -f '{{index .Config.Labels "cerniq.lab.image"}}' "$c")" != "$image" ]; then
    say "$c was created from another image; recreating it"
    return 1
  fi
  if [ "$(podman container inspect -f '{{.State.Running}}' "$c")" != true ] \
      && ! podman start "$c" >/dev/null 2>&1; then
    say "$c does not start; recreating it"
    return 1
  fi
  if ! answers "$c"; then
    say "$c does not answer (its processes are gone, e.g. killed with the session that ran it); recreating it"
    return 1
  fi
}

remove() {  # container $1, also when its conmon is gone
  # Podman 4.3 waits for the exit file conmon would write; with conmon killed the first
  # `rm -f` times out (exit 125, "timed out waiting for file /run/libpod/exits/...") and only
  # then marks the container stopped, so the next attempt removes it.
  local attempt
  for attempt in 1 2 3; do
    podman rm -f -t 5 "$1" >/dev/null 2>&1 && return 0
    exists "$1" || return 0
    say "$1: podman rm failed (attempt $attempt); retrying"
  done
  podman rm -f -t 5 "$1" >/dev/null || die "$1 cannot be removed"
}

create() {  # container $1 from image $2; the monitor publishes Prometheus and Alertmanager on loopback
  local c=$1 image=$2 args
  args=(--detach --name "$c" --hostname "$c" --label "$LABEL" --label "cerniq.lab.image=$image"
        --network "$NETWORK" --cap-add SYS_ADMIN --systemd always)
  # A CPU weight for the containers (scripts/run-tests.sh gives its lanes' containers their nice's weight).
  [ -z "${CERNIQ_CONTAINER_CPU_SHARES:-}" ] || args+=(--cpu-shares "$CERNIQ_CONTAINER_CPU_SHARES")
  if [ "$c" = "$MONITOR" ]; then
    # The ports it had before, when they are still free; else the next free ones.
    prom_port=${CERNIQ_LAB_PROMETHEUS_PORT:-$(pick_port "${prom_port:-9090}")} || die "no free port for Prometheus"
    am_port=${CERNIQ_LAB_ALERTMANAGER_PORT:-$(pick_port "${am_port:-9093}")} || die "no free port for Alertmanager"
    [ "$prom_port" != "$am_port" ] || am_port=$(pick_port $((am_port + 1)))
    args+=(--publish "127.0.0.1:$prom_port:9090" --publish "127.0.0.1:$am_port:9093")
  fi
  podman run "${args[@]}" "$image" /sbin/init >/dev/null
  say "$c created"
}

# playbooks/site.yml on the lab. Without extra arguments, one run per host at once (--limit): each
# host's plays then run beside the others' instead of after them - the same plays and tasks in a
# quarter less time (alone: 210 -> 158 s from nothing, 123 -> 92 s on the converged lab; the
# database host is the longest). The lab workers (lab_workers, below) need only their own host and
# Redis: they start as soon as those two are done, beside the database host's run. Each host's
# output follows when all are done; a line says when each ends.
# With arguments (a --limit, --tags, --check of the user's), one run as given, then the workers.
run_site() {
  local site=(ansible-playbook -i inventory/lab playbooks/site.yml)
  export ANSIBLE_COLLECTIONS_PATH="$COLL_TMP" ANSIBLE_DEPRECATION_WARNINGS=false
  if [ ${#LAB_PLAYBOOK_ARGS[@]} -gt 0 ]; then
    "${site[@]}" "${LAB_PLAYBOOK_ARGS[@]}"
    lab_workers
    return
  fi
  local c pid failed="" done_hosts="" workers_pid="" t0=$SECONDS
  local -A host_of=()
  for c in "${CONTAINERS[@]}"; do
    "${site[@]}" --limit "$c" >"$COLL_TMP/site-$c.log" 2>&1 &
    host_of[$!]=$c
  done
  for c in "${CONTAINERS[@]}"; do
    if wait -n -p pid "${!host_of[@]}"; then
      say "site.yml on ${host_of[$pid]}: done ($((SECONDS - t0)) s)"
      done_hosts="$done_hosts ${host_of[$pid]} "
    else
      say "site.yml on ${host_of[$pid]}: FAILED ($((SECONDS - t0)) s)"
      failed="$failed ${host_of[$pid]}"
    fi
    unset "host_of[$pid]"
    if [ -z "$workers_pid$failed" ] && [[ $done_hosts == *" $WORKER "* && $done_hosts == *" $REDIS "* ]]; then
      say "lab workers: starting, beside the other hosts' site.yml"
      lab_workers >"$COLL_TMP/lab-workers.log" 2>&1 &
      workers_pid=$!
    fi
  done
  for c in "${CONTAINERS[@]}"; do
    cat "$COLL_TMP/site-$c.log"
  done
  [ -z "$failed" ] || { [ -z "$workers_pid" ] || wait "$workers_pid" || true; die "playbooks/site.yml failed on:$failed (output above)"; }
  if [ -n "$workers_pid" ]; then
    if wait "$workers_pid"; then cat "$COLL_TMP/lab-workers.log"; else
      cat "$COLL_TMP/lab-workers.log"; die "extensions/lab/lab_workers.yml failed (output above)"
    fi
  else
    lab_workers
  fi
}

# The stand-in workers (real BullMQ workers with the workers' metrics), from a wheelhouse
# downloaded here once (the containers install offline from it).
lab_workers() {
  wheelhouse
  say "running extensions/lab/lab_workers.yml"
  CERNIQ_LAB_WHEELHOUSE="$WHEELS" ansible-playbook -i inventory/lab extensions/lab/lab_workers.yml "${LAB_PLAYBOOK_ARGS[@]}"
}

up() {
  local t0=$SECONDS image
  prom_port=""; am_port=""
  image=$(scripts/build-image.sh | tail -n1)
  [ -n "$image" ] || die "image build failed"
  say "image $image"

  if ! podman network exists "$NETWORK"; then
    podman network create --label "$LABEL" "$NETWORK" >/dev/null
    say "network $NETWORK created"
  fi

  local c
  for c in "${CONTAINERS[@]}"; do
    if exists "$c"; then
      ours "$c" || die "$c exists but was not created by the lab; not touching it"
      if reusable "$c" "$image"; then
        say "$c reused"
        continue
      fi
      [ "$c" != "$MONITOR" ] || { prom_port=$(published 9090); am_port=$(published 9093); }
      remove "$c"
    fi
    create "$c" "$image"
  done
  for c in "${CONTAINERS[@]}"; do
    wait_systemd "$c"
  done

  # Name resolution between the containers (aardvark-dns on the lab network).
  podman exec cerniq-lab-db getent hosts "$MONITOR" >/dev/null \
    || die "containers do not resolve each other on $NETWORK (podman DNS missing?)"

  COLL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cerniq-lab.XXXXXX")
  trap 'rm -rf "$COLL_TMP"' EXIT
  mkdir -p "$COLL_TMP/ansible_collections/cerniq"
  ln -s "$ROOT" "$COLL_TMP/ansible_collections/cerniq/ops"
  say "running playbooks/site.yml"
  run_site

  # One run of each maintenance job now, so that their freshness metrics exist
  # (otherwise MaintenanceStatusMissing fires until the first timer run at night);
  # the nightly dump first, so that the weekly job has a backup to verify.
  for job in backup daily weekly; do
    if podman exec cerniq-lab-db systemctl start "cerniq-maintenance@$job.service"; then
      say "maintenance $job: ran"
    else
      say "maintenance $job: FAILED (podman exec cerniq-lab-db journalctl -u cerniq-maintenance@$job)"
    fi
  done

  prom_port=$(published 9090); am_port=$(published 9093)
  say "lab up in $((SECONDS - t0)) s"
  say "Prometheus:   http://127.0.0.1:$prom_port"
  say "Alertmanager: http://127.0.0.1:$am_port"
}

down() {
  local c
  for c in "${CONTAINERS[@]}"; do
    if exists "$c"; then
      if ours "$c"; then remove "$c"; say "$c removed"
      else say "$c was not created by the lab; left alone"; fi
    fi
  done
  if podman network exists "$NETWORK"; then
    if [ "$(podman network inspect -f '{{index .Labels "cerniq.lab"}}' "$NETWORK" 2>/dev/null)" = 1 ]; then
      podman network rm "$NETWORK" >/dev/null && say "network $NETWORK removed"
    else
      say "network $NETWORK was not created by the lab; left alone"
    fi
  fi
}

status() {
  local c state
  for c in "${CONTAINERS[@]}"; do
    if exists "$c"; then
      state=$(podman container inspect -f '{{.State.Status}}' "$c")
      printf '%-20s %s\n' "$c" "$state"
    else
      printf '%-20s %s\n' "$c" absent
    fi
  done
  exists "$MONITOR" || return 0
  local prom_port am_port
  prom_port=$(published 9090); am_port=$(published 9093)
  echo "Prometheus:   http://127.0.0.1:$prom_port"
  echo "Alertmanager: http://127.0.0.1:$am_port"
  python3 - "$prom_port" <<'PY' || true
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
try:
    targets = json.load(urllib.request.urlopen(base + "/api/v1/targets", timeout=5))["data"]["activeTargets"]
    alerts = json.load(urllib.request.urlopen(base + "/api/v1/alerts", timeout=5))["data"]["alerts"]
except OSError as exc:
    print(f"Prometheus not answering: {exc}")
    sys.exit(0)
for t in sorted(targets, key=lambda t: (t["labels"]["job"], t["labels"]["instance"])):
    print(f"  target {t['labels']['job']:<15} {t['labels']['instance']:<28} {t['health']}")
for a in alerts:
    print(f"  alert  {a['labels']['alertname']:<28} {a['labels'].get('severity', ''):<5} {a['state']}")
PY
}

LAB_PLAYBOOK_ARGS=("${@:2}")
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [ansible-playbook args] | down | status" >&2; exit 2 ;;
esac
