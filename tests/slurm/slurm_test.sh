#!/usr/bin/env bash
# launch/slurm against a real SLURM controller: installs Debian's slurm-wlm and munge when they
# are missing, starts munged, slurmctld and slurmd for this one node from a generated slurm.conf
# (all state, sockets, ports and logs in a temporary folder), then
#   1. submits configs/runs/default.json with launch/slurm/submit (mpirun inside the allocation)
#      and checks the job's answers equal a direct mpirun run of the same workload (same ids),
#      its log holds the same per-rank table, and a trace was written for the job id;
#   2. the same with the ranks started by `srun --mpi=pmix`;
#   3. submits a config whose expert map places an expert on a rank that does not exist: the job
#      must end FAILED, with the rank's one-line error in the job log.
# The daemons (and anything they started) are stopped on every exit; none is left running.
# Usage: slurm_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
tiny=$root/configs/models/switch-tiny
deadline=90  # seconds a job may take, from submission to its end
start=$SECONDS
step() { echo "[$((SECONDS - start))s] $*"; }

# --- install ---------------------------------------------------------------------------------
# libpmix2 (Open MPI's PMIx, installed with it) is what slurm's mpi/pmix plugin loads for srun.
packages=(slurm-wlm munge libpmix2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  (($(id -u) == 0)) || sudo_cmd=(sudo)
  step "+ apt-get install ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
(($(id -u) == 0)) || { echo "this test starts slurmd, which needs root"; exit 1; }

# --- daemons -----------------------------------------------------------------------------------
work=$(mktemp -d /tmp/moe-slurm-test.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{munge,state,spool,log,out}
export SLURM_CONF=$work/slurm.conf  # every client and daemon below, and all they start, carry it
pids=()

# Pids of every process that carries our SLURM_CONF: the daemons, job steps and ranks.
ours() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p != "$$" && $p != "$BASHPID" ]] || continue
    { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "SLURM_CONF=$SLURM_CONF" && echo "$p"
  done
}

wait_gone() {  # wait_gone TENTHS PID...: waits until none of the PIDs is alive
  local tenths=$1 p alive
  shift
  for _ in $(seq 1 "$tenths"); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  return 1
}

cleanup() {
  local status=$?
  set +e
  if ((${#pids[@]})); then
    scancel --quiet --full --signal=KILL --user=root 2>/dev/null
    scontrol shutdown >/dev/null 2>&1
    wait_gone 100 "${pids[@]}"
  fi
  [[ -n ${munged_pid:-} ]] && { kill -TERM "$munged_pid"; wait_gone 30 "$munged_pid"; }
  local left
  left=$(ours)
  if [[ -n $left ]]; then
    echo "killing leftover processes: $(echo $left)"
    kill -KILL $left 2>/dev/null
    wait_gone 30 $left
  fi
  left=$(ours)
  [[ -z $left ]] || { echo "FAIL: processes still running: $(echo $left)"; status=1; }
  if ((status != 0)); then
    for f in "$work"/log/*; do echo "--- $f"; tail -n 20 "$f"; done
  fi
  rm -rf "$work"
  step "daemons stopped, none left running"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "munge key and munged"
dd if=/dev/urandom of="$work/munge/key" bs=1024 count=1 status=none
chmod 400 "$work/munge/key"
munged --force --foreground --socket="$work/munge/socket" --key-file="$work/munge/key" \
  --pid-file="$work/munge/pid" --log-file="$work/log/munged.log" --seed-file="$work/munge/seed" &
munged_pid=$!
for _ in $(seq 1 50); do [[ -S $work/munge/socket ]] && break; sleep 0.1; done

# Two free ports, held open together so they differ.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
host=$(hostname -s)
cat >"$SLURM_CONF" <<EOF
ClusterName=moetest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=600
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
# More CPUs than the machine's two cores, so a job can hold one task per rank.
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

step "slurmctld and slurmd"
slurmctld -D -c -i >"$work/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D >"$work/log/slurmd.out" 2>&1 &
pids+=($!)
for i in $(seq 1 300); do
  [[ $(sinfo --noheader --nodes="$host" --format=%t 2>/dev/null) == idle ]] && break
  ((i < 300)) || { echo "FAIL: node $host never became idle"; sinfo; exit 1; }
  sleep 0.1
done
step "node $host idle: $(sinfo --noheader --format='%P %D %t %c')"

# --- jobs --------------------------------------------------------------------------------------
submit() {  # submit CONFIG [submit options]: sets $job and $job_status (0: COMPLETED)
  "$root/launch/slurm/submit" "$@" --moe "$build/moe" --out-dir "$work/out" | tee "$work/submitted"
  job=$(grep -oE 'Submitted batch job [0-9]+' "$work/submitted" | grep -oE '[0-9]+$')
  local state='' until=$((SECONDS + deadline))
  while ((SECONDS < until)); do
    state=$(scontrol show job "$job" | grep -oE 'JobState=[A-Z_]+' | cut -d= -f2)
    [[ $state =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING)$ ]] || break
    sleep 0.2
  done
  step "job $job ended: $(scontrol show job "$job" | grep -oE 'JobState=[A-Z_]+|ExitCode=[0-9:]+' | tr '\n' ' ')"
  [[ ! $state =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING)$ ]] || { echo "FAIL: job $job still $state after ${deadline}s"; exit 1; }
  job_status=0
  [[ $state == COMPLETED ]] || job_status=1
  echo "--- job log moe-$job.log"
  cat "$work/out/moe-$job.log"
}

source "$root/launch/mpirun_flags.sh"
direct=(mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$build/moe" generate --model "$tiny" --input "$tiny/prompts.jsonl"
  --batch-size 8 --max-new-tokens 24 --output "$work/direct.jsonl")
step "+ ${direct[*]}"
"${direct[@]}" >"$work/direct.out"

expect_equal_to_direct() {
  ((job_status == 0)) || { echo "FAIL: job $job did not complete"; exit 1; }
  "$build/tests/fixture_tool" compare "$work/direct.jsonl" "$work/out/moe-$job.jsonl" 0
  diff <(grep '^\[' "$work/direct.out") <(grep '^\[' "$work/out/moe-$job.log")
  diff <(grep '^rank' "$work/direct.out") <(grep '^rank' "$work/out/moe-$job.log")
  [[ $(grep -cE '^[0-9]+ ' "$work/out/moe-$job.log") -eq 3 ]] || { echo "FAIL: not 3 rows in the table"; exit 1; }
  grep -q '"traceEvents"' "$work/out/moe-$job.trace.json" || { echo "FAIL: no trace for job $job"; exit 1; }
  step "ok: job $job's answers equal the direct mpirun run; table and trace written"
}

step "1. default run config, mpirun inside the allocation"
submit "$root/configs/runs/default.json"
grep -q "coordinator on $host" "$work/out/moe-$job.log"
grep -q '^+ mpirun ' "$work/out/moe-$job.log"
expect_equal_to_direct

step "2. the same with srun --mpi=pmix"
submit "$root/configs/runs/default.json" --launcher srun
grep -q '^+ srun --mpi=pmix ' "$work/out/moe-$job.log"
expect_equal_to_direct

step "3. a rank that fails: the expert map places layer 0's expert 0 on rank 7 of 3"
python3 - "$work" "$root" <<'PY'
import json, sys
work, root = sys.argv[1:]
layers = [{"layer": l, "experts": [[7 if (l, e) == (0, 0) else 1 + e % 2] for e in range(8)]} for l in range(4)]
json.dump({"layers": layers}, open(f"{work}/bad-map.json", "w"))
cfg = json.load(open(f"{root}/configs/runs/default.json"))
cfg["expert_map"] = f"{work}/bad-map.json"
json.dump(cfg, open(f"{work}/bad-map-run.json", "w"))
PY
submit "$work/bad-map-run.json"
((job_status != 0)) || { echo "FAIL: the job with a bad expert map succeeded"; exit 1; }
scontrol show job "$job" | grep -q 'JobState=FAILED' || { echo "FAIL: job $job is not FAILED"; exit 1; }
grep -E "^moe generate: error: rank 0 \(host [^)]+\): $work/bad-map.json: layer 0 expert 0 is placed on rank 7, but the expert ranks are 1..2" \
  "$work/out/moe-$job.log" || { echo "FAIL: the rank's error is not in the job log"; exit 1; }
[[ ! -e $work/out/moe-$job.jsonl ]] || { echo "FAIL: the failed job left an answers file"; exit 1; }
step "ok: job $job FAILED with the rank's message in its log"
