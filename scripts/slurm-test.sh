#!/usr/bin/env bash
# A real Slurm round trip for `hessian-gan sweep --runner slurm` (issue 21): as root, builds a throw-away single-node
# cluster (its own munged on a private socket, slurmctld and slurmd with a slurm.conf in a temporary directory, on
# ports of its own), runs a sweep of 4 tiny CPU runs (2 seeds x 2 HP weights) as a job array (showing `sweep status`
# while it runs), waits for them, checks that all finished and summarises them; then cancels a longer run after its
# first snapshot (a lost allocation), checks that it reads as interrupted, and that `sweep resume` resubmits it and it
# continues from that snapshot. Finally it stops every daemon it started and removes the directory, also on failure or
# Ctrl-C (trap).
# Nothing outside the temporary directory is changed except /etc/munge/munge.key, created when missing.
#
#   sudo bash scripts/slurm-test.sh            (HESSIAN_GAN_BIN=path to use another binary; SLURM_TEST_TIMEOUT=s)
#
# Needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge). Exits 0 when all of that held.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$(realpath "${HESSIAN_GAN_BIN:-target/release/hessian-gan}")
TIMEOUT=${SLURM_TEST_TIMEOUT:-300}

[[ $(id -u) == 0 ]] || { echo "slurm-test: must run as root (it starts munged, slurmctld and slurmd)" >&2; exit 2; }
for tool in munged slurmctld slurmd sbatch squeue sinfo scancel; do
    command -v "$tool" >/dev/null || { echo "slurm-test: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 2; }
done
[[ -x $BIN ]] || { echo "slurm-test: no binary at $BIN (cargo build --release)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/hg-slurm-test.XXXXXX)
chmod 755 "$WORK"
PIDS=()
JOB=""

cleanup() {
    local rc=$?
    set +e
    if [[ -n $JOB ]] && [[ $rc != 0 ]]; then
        scancel "$JOB" 2>/dev/null
    fi
    # Only the daemons this script started, by their pid, newest first (slurmd, slurmctld, munged).
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # Job steps that outlived slurmd (none expected: proctrack/linuxproc kills them with their job).
    if [[ $rc != 0 ]] && [[ -d $WORK ]]; then
        echo "--- slurmctld.log (tail)"; tail -n 20 "$WORK/log/slurmctld.log" 2>/dev/null
        echo "--- slurmd.log (tail)"; tail -n 20 "$WORK/log/slurmd.log" 2>/dev/null
    fi
    rm -rf "$WORK"
    echo "slurm-test: daemons stopped, $WORK removed (exit $rc)"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { echo; echo "== $*"; }

step "munge"
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key; else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    echo "created /etc/munge/munge.key"
fi
mkdir -p "$WORK/munge" "$WORK/log" "$WORK/state" "$WORK/spool"
chmod 755 "$WORK/munge" # munged wants its socket's directory searchable by all (the clients)
MUNGE_SOCKET=$WORK/munge/munge.socket
# A private munged (its own socket, pid, log and seed files), so that a system munged is left alone. It runs as root
# (--force) in the foreground as this script's child, so that the trap stops it by its pid and reaps it.
munged --foreground --force --socket="$MUNGE_SOCKET" --pid-file="$WORK/munge/munged.pid" \
    --log-file="$WORK/munge/munged.log" --seed-file="$WORK/munge/munged.seed" >>"$WORK/log/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [[ -S $MUNGE_SOCKET ]] && break; sleep 0.1; done
[[ -S $MUNGE_SOCKET ]] || { echo "munged did not start"; cat "$WORK/log/munged.out"; exit 1; }
echo "munged pid ${PIDS[-1]} on $MUNGE_SOCKET"

step "slurm.conf"
HOST=$(hostname -s)
# The node as slurmd sees it (CPUs, sockets, cores, threads), with a little memory held back so that the node is not
# drained for reporting less than configured.
NODE=$(slurmd -C | head -n 1)
MEM=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$NODE")
NODE="${NODE/RealMemory=$MEM/RealMemory=$((MEM * 9 / 10))}"
export SLURM_CONF=$WORK/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=hgtest
SlurmctldHost=$HOST
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SchedulerType=sched/backfill
$NODE State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
cat "$SLURM_CONF"

step "slurmctld and slurmd"
# In the foreground (children of this script, stopped by pid); their console output goes beside their log files.
slurmctld -D -i >>"$WORK/log/slurmctld.out" 2>&1 &
PIDS+=($!)
echo "slurmctld pid ${PIDS[-1]}"
slurmd -D >>"$WORK/log/slurmd.out" 2>&1 &
PIDS+=($!)
echo "slurmd pid ${PIDS[-1]}"
deadline=$((SECONDS + 60))
until sinfo -h -n "$HOST" -o %t 2>/dev/null | grep -qx idle; do
    ((SECONDS < deadline)) || { echo "the node did not become idle:"; sinfo -N -l; exit 1; }
    sleep 1
done
sinfo

step "a tiny dataset and preset"
"$BIN" -q dataset synth --kind clevr-simple --count 64 --resolution 8 --seed 5 "$WORK/datasets/tiny"
cat >"$WORK/tiny.json" <<EOF
{"dataset": "tiny", "datasets_dir": "$WORK/datasets", "resolution": 8, "nz": 3, "fmap_base": 32, "fmap_max": 16,
 "hp_lambda": 0.1, "warmup_kimg": 0, "layers_to_reg": [1, 2, 3, 4, 5], "num_gpus": 2,
 "lod_training_kimg": 0.5, "lod_transition_kimg": 0.5, "minibatch": {"4": 8, "8": 8}, "tick_kimg": 1,
 "total_kimg": 1, "compute_interp_ticks": -1, "network_snapshot_ticks": 1,
 "score_ticks": 1, "score_samples": 120, "score_groups": 6, "metrics_options": {"cache_dir": "$WORK/cache"}}
EOF

SWEEP=$WORK/sweep
step "hessian-gan sweep --runner slurm"
"$BIN" --device cpu sweep --config "$WORK/tiny.json" --seeds 1-2 --set hp_lambda=0,0.1 --runner slurm \
    --parallel 2 --cpus-per-task 1 --time 00:10:00 --out "$SWEEP" | tee "$WORK/submit.txt"
JOB=$(sed -nE 's/^submitted job ([0-9]+)$/\1/p' "$WORK/submit.txt")
[[ -n $JOB ]] || { echo "no job id printed"; exit 1; }
echo "--- sweep.sbatch"
cat "$SWEEP/sweep.sbatch"
squeue

step "waiting for job $JOB (timeout ${TIMEOUT}s)"
deadline=$((SECONDS + TIMEOUT))
shown=""
while [[ -n $(squeue -h -j "$JOB" 2>/dev/null) ]]; do
    ((SECONDS < deadline)) || { echo "timed out"; squeue; "$BIN" sweep status "$SWEEP"; exit 1; }
    # Once, while a task trains: the status of a running sweep (running tasks must not read as interrupted).
    if [[ -z $shown ]] && grep -qs '"running"' "$SWEEP"/runs/*/attempt.json; then
        shown=1
        squeue
        "$BIN" sweep status "$SWEEP" | tee "$WORK/status-running.txt"
        if grep -q interrupted "$WORK/status-running.txt"; then echo "a running task reads as interrupted"; exit 1; fi
    fi
    sleep 1
done
echo "job $JOB left the queue after ${SECONDS}s of this script"

step "hessian-gan sweep status"
"$BIN" sweep status "$SWEEP"
step "hessian-gan sweep summarize"
"$BIN" sweep summarize "$SWEEP"
step "task logs"
for f in "$SWEEP"/slurm/*.out; do echo "--- $(basename "$f")"; cat "$f"; done

# The status table's last line counts the runs per state: all 4 (2 seeds x 2 arms) must be finished.
counts=$("$BIN" sweep status "$SWEEP" | tail -n 1)
[[ $counts == "finished 4" ]] || { echo "FAIL: $counts"; exit 1; }

# A lost allocation: one longer run (3 kimg) is cancelled after its first snapshot; `sweep resume` submits it again
# and it continues from that snapshot.
wait_gone() { # job
    local deadline=$((SECONDS + TIMEOUT))
    while [[ -n $(squeue -h -j "$1" 2>/dev/null) ]]; do
        ((SECONDS < deadline)) || { echo "timed out"; squeue; exit 1; }
        sleep 1
    done
}
SWEEP2=$WORK/sweep-cancelled
step "cancel and resume: hessian-gan sweep --runner slurm, 1 run of 3 kimg"
"$BIN" --device cpu sweep --config "$WORK/tiny.json" --seeds 7 --runner slurm --cpus-per-task 1 --out "$SWEEP2" \
    -- --total-kimg 3 --score-ticks 0 | tee "$WORK/submit2.txt"
JOB=$(sed -nE 's/^submitted job ([0-9]+)$/\1/p' "$WORK/submit2.txt")
deadline=$((SECONDS + TIMEOUT))
until ls "$SWEEP2"/runs/*/*/network-snapshot-000001.safetensors >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "no snapshot"; exit 1; }
    sleep 0.2
done
scancel "$JOB"
echo "scancel $JOB after the first snapshot"
wait_gone "$JOB"
"$BIN" sweep status "$SWEEP2" | tee "$WORK/status-cancelled.txt"
grep -q "interrupted" "$WORK/status-cancelled.txt" || { echo "FAIL: the cancelled run does not read as interrupted"; exit 1; }
"$BIN" sweep resume "$SWEEP2" | tee "$WORK/submit3.txt"
JOB=$(sed -nE 's/^submitted job ([0-9]+)$/\1/p' "$WORK/submit3.txt")
grep -- "--array" "$SWEEP2/sweep.sbatch"
wait_gone "$JOB"
"$BIN" sweep status "$SWEEP2" | tee "$WORK/status-resumed.txt"
grep -A3 '"resumed_from"' "$SWEEP2"/runs/*/attempt.json | head -n 1
grep -q '"resumed_from": "/' "$SWEEP2"/runs/*/attempt.json || { echo "FAIL: the run was not resumed from its snapshot"; exit 1; }
[[ $(tail -n 1 "$WORK/status-resumed.txt") == "finished 1" ]] || { echo "FAIL: the resumed run did not finish"; exit 1; }

# Preemption: Slurm itself requeues a running task (`scontrol requeue`, what a preempting partition does to a
# `--requeue` job); the same array task starts again and resumes its run from the newest snapshot, with no `sweep`
# command in between.
SWEEP3=$WORK/sweep-requeued
step "requeue: hessian-gan sweep --runner slurm, 1 run of 3 kimg, scontrol requeue after its first snapshot"
"$BIN" --device cpu sweep --config "$WORK/tiny.json" --seeds 8 --runner slurm --cpus-per-task 1 --out "$SWEEP3" \
    -- --total-kimg 3 --score-ticks 0 | tee "$WORK/submit4.txt"
JOB=$(sed -nE 's/^submitted job ([0-9]+)$/\1/p' "$WORK/submit4.txt")
deadline=$((SECONDS + TIMEOUT))
until ls "$SWEEP3"/runs/*/*/network-snapshot-000001.safetensors >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "no snapshot"; exit 1; }
    sleep 0.2
done
scontrol requeue "${JOB}_0"
echo "scontrol requeue ${JOB}_0 after the first snapshot"
# A requeued job waits for a begin time Slurm sets a little in the future; let it start at once.
for _ in 1 2 3 4 5; do
    scontrol update JobId="${JOB}_0" BeginTime=now 2>/dev/null && break
    sleep 1
done
wait_gone "$JOB"
"$BIN" sweep status "$SWEEP3" | tee "$WORK/status-requeued.txt"
echo "--- the task's log (both attempts, appended)"
cat "$SWEEP3"/slurm/*.out
grep -q '"resumed_from": "/' "$SWEEP3"/runs/*/attempt.json || { echo "FAIL: the requeued run did not resume"; exit 1; }
[[ $(tail -n 1 "$WORK/status-requeued.txt") == "finished 1" ]] || { echo "FAIL: the requeued run did not finish"; exit 1; }
[[ $(find "$SWEEP3"/runs/*/ -mindepth 1 -maxdepth 1 -type d | wc -l) == 2 ]] ||
    { echo "FAIL: expected the first attempt's run directory and the resumed one"; exit 1; }

step "result"
echo "PASS: 4 of 4 runs finished through Slurm; a cancelled run resumed from its snapshot and finished; a requeued"
echo "task resumed its run from its snapshot and finished"
