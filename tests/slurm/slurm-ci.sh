#!/usr/bin/env bash
# A real one-node SLURM cluster for the tests, from Debian's packages (root only).
#   bash tests/slurm/slurm-ci.sh start   # install if missing, configure, start, health-check (~13 s)
#   bash tests/slurm/slurm-ci.sh stop    # cancel jobs, stop every daemon by its PID file
# No accounting (slurmdbd): Snakemake's plugin must poll with squeue (profiles/slurm does).
set -euo pipefail
ACTION="${1:-start}"
PARTITION="${PARTITION:-debug}"
PIDS=(/run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid)

log_tails() {
  for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
  done
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "slurm-ci: timed out waiting for $what" >&2; log_tails >&2; exit 1
}

start() {
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
  if [ -d /run/systemd/system ]; then systemctl stop slurmd slurmctld munge 2>/dev/null || true; fi
  # a cluster left running (an earlier start without stop): restart it with a fresh config and state
  stop_pidfile /run/slurm/slurmd.pid; stop_pidfile /run/slurm/slurmctld.pid
  local node hw mem
  node=$(hostname -s)
  mem=$(awk '/MemTotal/{printf "%d", $2/1024*0.9}' /proc/meminfo)
  hw=$(slurmd -C | head -1 | sed -E "s/RealMemory=[0-9]+/RealMemory=${mem}/")
  mkdir -p /etc/slurm /run/munge /run/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  chown munge:munge /run/munge; chown slurm:slurm /run/slurm /var/lib/slurm/slurmctld /var/log/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=cicluster
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
EnforcePartLimits=ALL
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
${hw} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=${PARTITION} Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
  rm -rf /var/lib/slurm/slurmctld/*
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
  fi
  wait_for 10 "munged" bash -c "munge -n | unmunge"
  /usr/sbin/slurmctld
  wait_for 20 "slurmctld" scontrol ping
  /usr/sbin/slurmd -N "$node"
  wait_for 30 "node idle" bash -c "sinfo -h -o %t | grep -q idle"
  [ "$(srun -t 1 hostname)" = "$node" ] || { echo "slurm-ci: srun failed" >&2; log_tails >&2; exit 1; }
  echo "slurm-ci: cluster up (node $node, partition $PARTITION)"
}

stop_pidfile() {  # SIGTERM the daemon of one PID file, SIGKILL that PID only after 20 s
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  [ -n "$pid" ] || return 0
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop() {
  scancel --user="$(id -un)" 2>/dev/null || true
  for pidfile in "${PIDS[@]}"; do stop_pidfile "$pidfile"; done
  # Without a controller, `scontrol show config` waits 9 s for it, and snakemake-executor-plugin-slurm
  # runs that at import, so EVERY later snakemake call (local ones too) would start 9-10 s slower.
  # With no slurm.conf it fails at once. `start` writes a fresh one.
  [ -f /etc/slurm/slurm.conf ] && mv -f /etc/slurm/slurm.conf /etc/slurm/slurm.conf.stopped
  echo "slurm-ci: stopped"
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
