#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for `make cluster-test`: Debian's slurmctld, slurmd and
# munge, configured in a private directory (nothing in /etc/slurm is touched), started and stopped
# here. `start` prints the SLURM_CONF to export; `stop` ends every daemon it started.
#   scripts/slurm_cluster.sh start DIR    # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   scripts/slurm_cluster.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop} dir=$(realpath -m "${2:?a directory for the state of the cluster}")
host=$(hostname -s)

stop() {
    local pids=()
    for file in "$dir"/*.pid; do
        [[ -e $file ]] && pids+=("$(cat "$file")")
    done
    ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 30); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.5
    done
    rm -f "$dir"/*.pid
}

case $cmd in
start)
    mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/log" "$dir/munge"
    cpus=$(nproc) memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat > "$dir/slurm.conf" <<CONF
ClusterName=lrem
SlurmctldHost=$host
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
    # munge: its own socket and state, the key Debian's package made.
    munged --socket="$dir/munge/munge.socket" --pid-file="$dir/munged.pid" \
        --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" --force
    export SLURM_CONF=$dir/slurm.conf
    # Daemons find munge through the socket named in the environment of the plugin.
    sed -i "1i AuthInfo=socket=$dir/munge/munge.socket" "$dir/slurm.conf"
    slurmctld -f "$dir/slurm.conf"
    slurmd -f "$dir/slurm.conf"
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "export SLURM_CONF=$dir/slurm.conf"
            exit 0
        fi
        sleep 1
    done
    echo "slurm did not come up; logs in $dir/log" >&2
    tail -20 "$dir"/log/*.log >&2 || true
    stop
    exit 1
    ;;
stop) stop ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
