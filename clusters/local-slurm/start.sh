#!/usr/bin/env bash
# Real Slurm 22.05 clusters on this one machine, emulating the paper's two sites.
#
#   start.sh [start]   install what is missing (Debian 12, root), write the configs, start the daemons
#                      and wait until every node is idle; a second run only checks (about 1 s)
#   start.sh stop      stop the daemons this script started (PID files, checked against process names)
#   start.sh status    daemons, nodes and partitions of both clusters
#
# Cluster "dcu"  (default SLURM_CONF=/etc/slurm/slurm.conf, used by the profiles local-slurm and local-dcu):
#   node $(hostname -s) with a custom gres `dcu:4` (fake devices: symlinks to /dev/null), partitions
#   `debug` (default) and `dcu`. Slurm sets no visible-devices variable for a custom gres, as on DCU sites.
# Cluster "v100" (SLURM_CONF=/etc/slurm/v100/slurm.conf, profile local-v100): its own slurmctld on port
#   7817, job ids from 100000, two slurmd instances as nodes v100-n1 and v100-n2, each with a fake `gpu:8`.
# Both clusters keep accounting in one slurmdbd (MariaDB), because submitit learns job states only from sacct.
#
# Environment knobs:
#   MST_SLURM_CPUS (or SLURM_CPUS)  CPUs each node advertises (default 4: oversubscribes a 2-core machine so that a
#                      2-task job and a downstream job fit side by side)
#   MST_SLURM_WAIT_S   seconds to wait for nodes to become idle (default 60)
set -euo pipefail

ACTION="${1:-start}"
CPUS="${MST_SLURM_CPUS:-${SLURM_CPUS:-4}}"
WAIT_S="${MST_SLURM_WAIT_S:-60}"
CONF_DIR=/etc/slurm
V100_DIR=/etc/slurm/v100
FAKE_DIR=/etc/slurm/fakedev
LOG_DIR=/var/log/slurm
V100_NODES="v100-n1 v100-n2"
T0=$(date +%s.%N)
log() { echo "[local-slurm +$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s] $*"; }
die() { echo "local-slurm: $*" >&2; exit 1; }

# alive PIDFILE COMM: the pid in PIDFILE is a live, non-zombie process named COMM
alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] &&
    [ "$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)" != Z ]
}
stop_daemon() {
  local pid i
  if alive "$1" "$2"; then
    pid=$(cat "$1"); log "stopping $2 (pid $pid)"; kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do alive "$1" "$2" || break; sleep 0.1; done
    if alive "$1" "$2"; then log "$2 did not stop, SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$1"
}
# slurmd before slurmctld before slurmdbd before the database (the reverse of the start order)
DAEMONS="/run/slurmd-v100-n1.pid:slurmd /run/slurmd-v100-n2.pid:slurmd /run/slurmctld-v100.pid:slurmctld
/run/slurmd.pid:slurmd /run/slurmctld.pid:slurmctld /run/slurmdbd.pid:slurmdbd
/run/mysqld/mysqld.pid:mariadbd /run/munge/munged.pid:munged"

case "$ACTION" in
  stop)
    for d in $DAEMONS; do stop_daemon "${d%%:*}" "${d##*:}"; done; exit 0 ;;
  status)
    for d in $DAEMONS; do
      if alive "${d%%:*}" "${d##*:}"; then echo "${d##*:} running (pid $(cat "${d%%:*}"), ${d%%:*})"
      else echo "${d##*:} not running (${d%%:*})"; fi
    done
    sinfo 2>&1 || true; SLURM_CONF=$V100_DIR/slurm.conf sinfo 2>&1 || true; exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || die "start needs root (it installs packages and runs the daemons as root)"

# ------------------------------------------------------------------ packages
PKGS="slurm-wlm munge slurmdbd mariadb-server"
MISSING=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || MISSING="$MISSING $p"
done
if [ -n "$MISSING" ]; then
  log "installing$MISSING"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # policy-rc.d keeps apt from starting services; this script starts them itself
  apt-get install -y -q --no-install-recommends $MISSING >/dev/null
fi

# ------------------------------------------------------------------ names, hardware, fake devices
HOST=$(hostname -s)
# node names must resolve: the first node of a job is MASTER_ADDR for torch.distributed
for n in "$HOST" $V100_NODES; do getent hosts "$n" >/dev/null || echo "127.0.0.1 $n" >> /etc/hosts; done
REALMEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
MEM=$(( REALMEM > 4096 ? REALMEM - 2048 : REALMEM ))
SHAPE="CPUs=${CPUS} Boards=1 SocketsPerBoard=1 CoresPerSocket=${CPUS} ThreadsPerCore=1"
# Slurm 22.05 wants gres File= entries that stat() as character devices: symlinks to /dev/null do.
mkdir -p "$FAKE_DIR" "$V100_DIR" /var/spool/slurmctld /var/spool/slurmctld-v100 /var/spool/slurmd \
  /var/spool/slurmd-v100 "$LOG_DIR"
for i in 0 1 2 3; do ln -sfn /dev/null "$FAKE_DIR/dcu$i"; done
for i in $(seq 0 15); do ln -sfn /dev/null "$FAKE_DIR/nvidia$i"; done

common_conf() {
cat <<EOF
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again only after cred_expire seconds (default 120)
AuthInfo=cred_expire=10
MpiDefault=none
MailProg=/bin/true
# no cgroups needed: track processes through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu,gres/dcu
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# short scheduling intervals: a requeued job restarts in about 10 s instead of about 3 minutes
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job with no --mem takes the whole node and jobs run one at a time
DefMemPerCPU=1024
ReturnToService=2
# nodes advertise the CPUs written here, not the detected ones
SlurmdParameters=config_overrides
MinJobAge=600
# SIGTERM to SIGKILL: the time a job has to save at its next step boundary
KillWait=15
InactiveLimit=0
Waittime=0
MessageTimeout=10
GresTypes=gpu,dcu
EOF
}

# write_conf FILE MODE < content: replace FILE only when the content differs; 0 when it changed
write_conf() {
  local tmp; tmp=$(mktemp)
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  install -m "$2" "$tmp" "$1"; rm -f "$tmp"; return 0
}

DCU_CHANGED=0
{ echo "# cluster dcu, written by clusters/local-slurm/start.sh"
  echo "ClusterName=dcu"
  echo "SlurmctldHost=${HOST}(127.0.0.1)"
  common_conf
  cat <<EOF
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
NodeName=${HOST} NodeAddr=127.0.0.1 ${SHAPE} RealMemory=${MEM} Gres=dcu:4 Features=dcu State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
PartitionName=dcu Nodes=${HOST} MaxTime=INFINITE State=UP
EOF
} | write_conf "$CONF_DIR/slurm.conf" 0644 && DCU_CHANGED=1
printf 'AutoDetect=off\nNodeName=%s Name=dcu File=%s/dcu[0-3]\n' "$HOST" "$FAKE_DIR" \
  | write_conf "$CONF_DIR/gres.conf" 0644 && DCU_CHANGED=1

V100_CHANGED=0
{ echo "# cluster v100, written by clusters/local-slurm/start.sh"
  echo "ClusterName=v100"
  echo "SlurmctldHost=${HOST}(127.0.0.1)"
  echo "SlurmctldPort=7817"
  echo "FirstJobId=100000"
  common_conf
  cat <<EOF
StateSaveLocation=/var/spool/slurmctld-v100
SlurmdSpoolDir=/var/spool/slurmd-v100/%n
SlurmctldPidFile=/run/slurmctld-v100.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld-v100.log
SlurmdLogFile=${LOG_DIR}/slurmd-%n.log
NodeName=v100-n1 NodeHostname=${HOST} NodeAddr=127.0.0.1 Port=7818 ${SHAPE} RealMemory=8192 Gres=gpu:8 Features=volta32gb State=UNKNOWN
NodeName=v100-n2 NodeHostname=${HOST} NodeAddr=127.0.0.1 Port=7819 ${SHAPE} RealMemory=8192 Gres=gpu:8 Features=volta32gb State=UNKNOWN
PartitionName=v100 Nodes=v100-n1,v100-n2 Default=YES MaxTime=INFINITE State=UP
EOF
} | write_conf "$V100_DIR/slurm.conf" 0644 && V100_CHANGED=1
printf 'AutoDetect=off\nNodeName=v100-n1 Name=gpu File=%s/nvidia[0-7]\nNodeName=v100-n2 Name=gpu File=%s/nvidia[8-15]\n' \
  "$FAKE_DIR" "$FAKE_DIR" | write_conf "$V100_DIR/gres.conf" 0644 && V100_CHANGED=1
mkdir -p /var/spool/slurmd-v100/v100-n1 /var/spool/slurmd-v100/v100-n2
log "configs written (dcu changed=$DCU_CHANGED, v100 changed=$V100_CHANGED), $CPUS CPUs per node"

# ------------------------------------------------------------------ munge
if ! alive /run/munge/munged.pid munged; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 0600 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  log "munged started"
fi
munge -n | unmunge >/dev/null || die "munge self-test failed"

# daemons that run with an older config are restarted
if [ "$DCU_CHANGED" = 1 ]; then stop_daemon /run/slurmd.pid slurmd; stop_daemon /run/slurmctld.pid slurmctld; fi
if [ "$V100_CHANGED" = 1 ]; then
  for n in $V100_NODES; do stop_daemon "/run/slurmd-$n.pid" slurmd; done
  stop_daemon /run/slurmctld-v100.pid slurmctld
fi

# ------------------------------------------------------------------ accounting: MariaDB + slurmdbd
if ! alive /run/mysqld/mysqld.pid mariadbd; then
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  # unix socket only; slurmdbd connects through it
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
    </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 &
  for i in $(seq 1 150); do mysqladmin ping >/dev/null 2>&1 && [ -s /run/mysqld/mysqld.pid ] && break; sleep 0.2; done
  mysqladmin ping >/dev/null 2>&1 || { tail -n 20 "$LOG_DIR/mariadb.log" >&2; die "mariadb did not start"; }
  log "mariadbd started"
fi
mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'mst-local';
          ALTER USER 'slurm'@'localhost' IDENTIFIED BY 'mst-local';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
# slurmdbd refuses a config that others can read
write_conf "$CONF_DIR/slurmdbd.conf" 0600 <<EOF && stop_daemon /run/slurmdbd.pid slurmdbd
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=${LOG_DIR}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=mst-local
StorageLoc=slurm_acct_db
EOF
if ! alive /run/slurmdbd.pid slurmdbd; then /usr/sbin/slurmdbd; log "slurmdbd started"; fi
# slurmctld on an empty state directory dies ("no TRES from it") when slurmdbd does not answer yet
for i in $(seq 1 150); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.2; done
sacctmgr -n show cluster >/dev/null 2>&1 || { tail -n 20 "$LOG_DIR/slurmdbd.log" >&2; die "slurmdbd does not answer"; }

# ------------------------------------------------------------------ slurmctld + slurmd
start_ctld() {   # CONF PIDFILE LOG
  alive "$2" slurmctld && return 0
  /usr/sbin/slurmctld -f "$1"
  for i in $(seq 1 100); do SLURM_CONF=$1 scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.1; done
  SLURM_CONF=$1 scontrol ping 2>/dev/null | grep -q 'is UP' || { tail -n 20 "$3" >&2; die "slurmctld ($1) is not up"; }
  log "slurmctld started ($1)"
}
start_slurmd() {   # CONF PIDFILE [NODENAME]
  alive "$2" slurmd && return 0
  /usr/sbin/slurmd -f "$1" ${3:+-N "$3"}
  for i in $(seq 1 50); do alive "$2" slurmd && break; sleep 0.1; done
  log "slurmd ${3:-$HOST} started"
}
wait_idle() {   # CONF NODE...
  local conf=$1 deadline=$(( $(date +%s) + WAIT_S )) n state; shift
  for n in "$@"; do
    while :; do
      state=$(SLURM_CONF=$conf sinfo -h -N -n "$n" -o '%T' 2>/dev/null | head -1 || true)
      case "$state" in
        idle|mixed|allocated|completing) break ;;
        drain*|down*) SLURM_CONF=$conf scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true ;;
      esac
      if [ "$(date +%s)" -ge "$deadline" ]; then
        SLURM_CONF=$conf sinfo -R >&2 || true
        die "node $n is not ready after ${WAIT_S}s (state '$state'); see $LOG_DIR"
      fi
      sleep 0.2
    done
  done
}

start_ctld "$CONF_DIR/slurm.conf" /run/slurmctld.pid "$LOG_DIR/slurmctld.log"
start_slurmd "$CONF_DIR/slurm.conf" /run/slurmd.pid
start_ctld "$V100_DIR/slurm.conf" /run/slurmctld-v100.pid "$LOG_DIR/slurmctld-v100.log"
for n in $V100_NODES; do start_slurmd "$V100_DIR/slurm.conf" "/run/slurmd-$n.pid" "$n"; done
wait_idle "$CONF_DIR/slurm.conf" "$HOST"
wait_idle "$V100_DIR/slurm.conf" $V100_NODES
# each slurmctld registers its cluster in slurmdbd by itself; wait until sacct answers for both
for conf in "$CONF_DIR/slurm.conf" "$V100_DIR/slurm.conf"; do
  for i in $(seq 1 50); do SLURM_CONF=$conf sacct -n -X -j 1 >/dev/null 2>&1 && break; sleep 0.2; done
  SLURM_CONF=$conf sacct -n -X -j 1 >/dev/null 2>&1 || die "sacct does not answer for $conf"
done
log "clusters dcu (SLURM_CONF=$CONF_DIR/slurm.conf) and v100 (SLURM_CONF=$V100_DIR/slurm.conf) are up"
