#!/bin/bash
# make test-slurm: a one-node Slurm on localhost (munged, slurmctld, slurmd from Debian's
# slurm-wlm and munge, a generated slurm.conf, loopback only), then a small deepres grid
# submitted as a job array, each task interrupted once mid-run: task 0 requeued by
# `scontrol requeue` (Slurm sends SIGTERM to its processes, deepres checkpoints and exits 75,
# Slurm runs the task again), task 1 preempted by SIGUSR1 to its batch shell alone (what
# `#SBATCH --signal=B:USR1@T` sends before the time limit: the shell forwards it, deepres
# checkpoints, the task requeues itself), task 2 cancelled and resubmitted. At the end every
# cell must be finished with each epoch exactly once in its metrics.csv, each task must have
# resumed from its checkpoint, and every metrics.csv must equal an uninterrupted run's of the
# same cell byte for byte except the two timing columns (epoch_seconds, images_per_second:
# wall-clock measurements). Then the grid again with --pack 3: one task training the three
# cells as one pack, requeued mid-run, against the same pack run without Slurm.
# Usage: scripts/test_slurm.sh [path/to/deepres]   (needs root or sudo for the daemons)
set -euo pipefail
DEEPRES=$(realpath "${1:-target/release/deepres}")
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "test-slurm: installing the Debian packages slurm-wlm and munge"
  $SUDO apt-get install -y slurm-wlm munge || { $SUDO apt-get update && $SUDO apt-get install -y slurm-wlm munge; }
fi
W=$(mktemp -d /tmp/deepres-slurm.XXXXXX)
chmod 755 "$W"
HOST=$(hostname -s)
CPUS=$(nproc)
echo "test-slurm: working in $W (host $HOST, $CPUS CPUs)"
PIDS=()
PASSED=
cleanup() {
  for p in "${PIDS[@]}"; do $SUDO kill "$p" 2>/dev/null || true; done
  [ -f "$W/munged.pid" ] && $SUDO kill "$(cat "$W/munged.pid")" 2>/dev/null || true
  # on success the work directory goes (KEEP=1 keeps it); on failure it stays for the logs
  if [ -n "$PASSED" ] && [ -z "${KEEP:-}" ]; then sleep 1; $SUDO rm -rf "$W"; else echo "test-slurm: logs in $W"; fi
}
trap cleanup EXIT

# munge: a fresh key and socket of our own, so a system munged (if any) is left alone.
mkdir -p "$W/munge"
$SUDO dd if=/dev/urandom of="$W/munge/munge.key" bs=1024 count=1 status=none
$SUDO chmod 600 "$W/munge/munge.key"
$SUDO munged --force --key-file="$W/munge/munge.key" --socket="$W/munge/socket" \
  --pid-file="$W/munged.pid" --log-file="$W/munged.log" --seed-file="$W/munge/seed"

mkdir -p "$W/state" "$W/spool" "$W/log"
cat > "$W/slurm.conf" <<CONF
ClusterName=deepres-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$W/munge/socket
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SwitchType=switch/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$W/slurm.conf
$SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -D -f "$SLURM_CONF" > "$W/log/slurmctld.out" 2>&1 &
PIDS+=($!)
$SUDO env SLURM_CONF="$SLURM_CONF" slurmd -D -f "$SLURM_CONF" > "$W/log/slurmd.out" 2>&1 &
PIDS+=($!)
for i in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -qE '^idle' && break
  sleep 1
  if [ "$i" = 60 ]; then
    echo "test-slurm: the node never became idle"; sinfo || true
    tail -n 20 "$W"/log/*; exit 1
  fi
done
echo "test-slurm: slurm is up: $(sinfo -h -o '%P %T %c CPUs')"

# The grid: 3 cells of a few seconds each, one CPU per task.
cat > "$W/grid.yaml" <<YAML
name: slurm
out_dir: $W/runs
base:
  device: cpu
  data: {name: synthetic, synthetic_train: 512, synthetic_test: 64}
  model: {depth: 8}
  train: {epochs: 6, batch_size: 32, eval_batch_size: 64, optimizer: {lr: 0.05}, schedule: {kind: constant}}
seeds: [0, 1, 2]
YAML
cd "$W"
export OMP_NUM_THREADS=1
scontrol show config | grep -E '^(KillWait|JobRequeue|SlurmctldParameters|PreemptMode) ' || true
JOB=$("$DEEPRES" sweep grid.yaml --slurm --partition test --time 10:00 -q)
echo "test-slurm: submitted job array $JOB"
# Waits until cell $1 has finished an epoch (mid-run: 6 epochs).
after_epoch_1() {
  for i in $(seq 240); do
    [ -s "runs/slurm/$1/metrics.csv" ] && [ "$(wc -l < "runs/slurm/$1/metrics.csv")" -ge 2 ] && return 0
    sleep 0.5
  done
  echo "test-slurm: $1 never finished an epoch"; squeue; exit 1
}
# Slurm holds a requeued job back for a while (its BeginTime, about two minutes here); this
# makes task $1 eligible now, once it is pending again.
eligible_now() {
  for i in $(seq 120); do
    if [ "$(squeue -h -j "$1" -o %T 2>/dev/null)" = PENDING ]; then
      scontrol update JobId="$1" StartTime=now && return 0
    fi
    sleep 0.5
  done
  echo "test-slurm: $1 was not requeued"; squeue; exit 1
}
after_epoch_1 s0
"$DEEPRES" sweep grid.yaml --status
scontrol requeue "${JOB}_0"
echo "test-slurm: requeued ${JOB}_0 (scontrol requeue) after $(($(wc -l < runs/slurm/s0/metrics.csv) - 1)) epoch(s)"
after_epoch_1 s1
scancel --batch --signal=USR1 "${JOB}_1"
echo "test-slurm: sent SIGUSR1 to the batch shell of ${JOB}_1 after $(($(wc -l < runs/slurm/s1/metrics.csv) - 1)) epoch(s)"
eligible_now "${JOB}_0"
eligible_now "${JOB}_1"
after_epoch_1 s2
scancel "${JOB}_2"
echo "test-slurm: cancelled ${JOB}_2 after $(($(wc -l < runs/slurm/s2/metrics.csv) - 1)) epoch(s)"
"$DEEPRES" sweep grid.yaml --status
for i in $(seq 600); do  # the requeued tasks finish their cells
  [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] && break
  sleep 0.5
done
JOB2=$("$DEEPRES" sweep grid.yaml --slurm --partition test --time 10:00 -q)
echo "test-slurm: resubmitted the unfinished cells as job array $JOB2"
for i in $(seq 600); do
  [ -z "$(squeue -h 2>/dev/null)" ] && break
  sleep 0.5
done
"$DEEPRES" sweep grid.yaml --status | tee status.txt
grep -q '^3 finished, 0 running, 0 diverged, 0 missing' status.txt
for c in s0 s1 s2; do
  got=$(tail -n +2 "runs/slurm/$c/metrics.csv" | cut -d, -f1 | tr '\n' ' ')
  [ "$got" = "1 2 3 4 5 6 " ] || { echo "test-slurm: $c has epochs '$got'"; exit 1; }
  grep -q '"finished"' "runs/slurm/$c/summary.json"
done
# Each task stopped on its signal with a checkpoint (deepres exited 75: it was not killed),
# inside an epoch or between two, and the same task (requeued) or the resubmitted one resumed.
expect() {  # expect TASK PATTERN
  grep -qE "$2" "runs/slurm/slurm/$1.out" || { echo "test-slurm: $1: no '$2' in its log:"; cat "runs/slurm/slurm/$1.out"; exit 1; }
}
stopped='(interrupted by a signal at step [0-9]+ of epoch|stopped by SIG[A-Z0-9]+ after epoch) [0-9]+'
expect "${JOB}_0" "s0: .*$stopped"
expect "${JOB}_0" "s0: running \(resuming after epoch"
expect "${JOB}_1" "s1: .*$stopped"
expect "${JOB}_1" "checkpointed on SIGUSR1; requeueing ${JOB}_1"
expect "${JOB}_1" "s1: running \(resuming after epoch"
expect "${JOB}_2" "s2: .*$stopped"
expect "${JOB2}_2" "s2: running \(resuming after epoch"
[ "$(ls runs/slurm/slurm/"${JOB2}"_*.out)" = "runs/slurm/slurm/${JOB2}_2.out" ] || { echo "test-slurm: the resubmission ran more than cell 2"; exit 1; }

# Every cell against an uninterrupted run of the same cell (same grid, another out_dir, here
# without Slurm; one intra-op thread in both, so CPU results repeat bit for bit).
sed "s|^out_dir: .*|out_dir: $W/ref|" grid.yaml > ref.yaml
"$DEEPRES" sweep ref.yaml -q
# metrics.csv without the columns named epoch_seconds and images_per_second (both must exist).
untimed() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "epoch_seconds" || $i == "images_per_second") { drop[i] = 1; n++ }
                     if (n != 2) { print "test-slurm: " FILENAME ": timing columns not found: " $0 > "/dev/stderr"; exit 1 } }
           { out = ""; sep = ""; for (i = 1; i <= NF; i++) if (!(i in drop)) { out = out sep $i; sep = "," }; print out }' "$1"
}
for c in s0 s1 s2; do
  untimed "runs/slurm/$c/metrics.csv" > "$c-resumed.csv"
  untimed "ref/slurm/$c/metrics.csv" > "$c-uninterrupted.csv"
  [ "$(wc -l < "$c-uninterrupted.csv")" = 7 ] || { echo "test-slurm: the uninterrupted run of $c has no 6 epochs"; cat "$c-uninterrupted.csv"; exit 1; }
  if ! cmp -s "$c-resumed.csv" "$c-uninterrupted.csv"; then
    echo "test-slurm: $c, interrupted and resumed, differs from an uninterrupted run (timing columns left out):"
    diff "$c-resumed.csv" "$c-uninterrupted.csv" || true
    exit 1
  fi
done

# Packs under Slurm: the same grid with --pack 3 is one array task (id 0, cells 0,1,2) that
# trains the three cells as one pack; it is requeued once mid-run, resumes every member from
# its checkpoint, and each metrics.csv equals the same pack's run without Slurm.
sed "s|^out_dir: .*|out_dir: $W/packed|" grid.yaml > packed.yaml
sed "s|^out_dir: .*|out_dir: $W/packref|" grid.yaml > packref.yaml
JOB3=$("$DEEPRES" sweep packed.yaml --slurm --pack 3 --partition test --time 10:00)
script=$(ls -t packed/slurm/slurm/sweep-*.sbatch | head -n 1)
grep -q '^#SBATCH --array=0$' "$script" && grep -q '^  0) CELLS=0,1,2 ;;$' "$script" ||
  { echo "test-slurm: the packed array is not one task of cells 0,1,2:"; cat "$script"; exit 1; }
for i in $(seq 240); do
  [ -s packed/slurm/s0/metrics.csv ] && [ "$(wc -l < packed/slurm/s0/metrics.csv)" -ge 2 ] && break
  sleep 0.5
  [ "$i" = 240 ] && { echo "test-slurm: the pack never finished an epoch"; squeue; exit 1; }
done
scontrol requeue "${JOB3}_0"
echo "test-slurm: requeued the packed task ${JOB3}_0 after $(($(wc -l < packed/slurm/s0/metrics.csv) - 1)) epoch(s)"
eligible_now "${JOB3}_0"
for i in $(seq 600); do
  [ -z "$(squeue -h -j "$JOB3" 2>/dev/null)" ] && break
  sleep 0.5
done
"$DEEPRES" sweep packref.yaml --pack 3 -q
log=packed/slurm/slurm/${JOB3}_0.out
[ "$(grep -c 'pack of 3: s0, s1, s2' "$log")" -ge 2 ] && grep -q 'resuming after epoch' "$log" ||
  { echo "test-slurm: the packed task did not run as a pack twice, resuming:"; cat "$log"; exit 1; }
for c in s0 s1 s2; do
  untimed "packed/slurm/$c/metrics.csv" > "$c-packed.csv"
  untimed "packref/slurm/$c/metrics.csv" > "$c-packref.csv"
  [ "$(wc -l < "$c-packref.csv")" = 7 ] || { echo "test-slurm: the packed run of $c has no 6 epochs"; exit 1; }
  cmp -s "$c-packed.csv" "$c-packref.csv" || { echo "test-slurm: packed $c under Slurm differs:"; diff "$c-packed.csv" "$c-packref.csv" || true; exit 1; }
done
PASSED=1
echo "test-slurm: OK: every cell finished with each epoch once; the requeued, the SIGUSR1-preempted and the cancelled task each checkpointed on the signal and resumed, and every metrics.csv equals an uninterrupted run's (timing columns aside); the packed task, requeued, resumed its pack and equals the pack run without Slurm"
