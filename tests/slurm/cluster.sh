# A real SLURM cluster for the tests, all of it under one temporary folder: installs Debian's
# slurm-wlm and munge when missing, starts munged, slurmctld on the first node and one slurmd per
# node from a generated slurm.conf, submits jobs with launch/slurm/submit, and stops everything
# (and anything the daemons started) on exit. Sourced by tests/slurm/slurm_test.sh (one node: this
# host) and tests/multinode/slurm_two_nodes.sh (two namespace nodes).
#
# The sourcing script sets, before calling cluster_start:
#   NODES=(name ...) ADDRESSES=(address ...)   the nodes (the first runs slurmctld and the clients)
#   on_node NODE COMMAND...                   a function that runs COMMAND on NODE
#   build root step                           as in the tests (build folder, checkout, a logger)
# and calls cluster_stop from its EXIT trap (cluster_stop returns the status to exit with);
# run_direct runs the default job without SLURM.
deadline=90  # seconds a job may take, from submission to its end
daemon_pids=()

cluster_install() {
  # libpmix2 (Open MPI's PMIx, installed with it) is what slurm's mpi/pmix plugin loads for srun.
  "$root/launch/install-missing.sh" --no-install-recommends slurm-wlm munge libpmix2
  (($(id -u) == 0)) || { echo "this test starts slurmd, which needs root"; exit 1; }
}

# The SLURM clients, run where slurmctld can be reached.
slurm() { on_node "${NODES[0]}" "$@"; }

# Pids of every process that carries our SLURM_CONF: the daemons, job steps and ranks.
ours() { "$root/tests/pids_with_env.sh" "SLURM_CONF=$SLURM_CONF"; }

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

cluster_stop() {  # cluster_stop STATUS: stops everything; prints the logs when STATUS is not 0
  local status=$1 left f
  set +e
  [[ -n ${work:-} ]] || return "$status"
  if ((${#daemon_pids[@]})); then
    slurm scancel --quiet --full --signal=KILL --user=root 2>/dev/null
    slurm scontrol shutdown >/dev/null 2>&1
    wait_gone 100 "${daemon_pids[@]}"
  fi
  [[ -n ${munged_pid:-} ]] && { kill -TERM "$munged_pid"; wait_gone 30 "$munged_pid"; }
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
  return "$status"
}

cluster_start() {
  work=$(mktemp -d /tmp/moe-slurm-test.XXXXXX)
  chmod 755 "$work"
  mkdir -p "$work"/{munge,state,spool,log,out}
  export SLURM_CONF=$work/slurm.conf  # every client and daemon below, and all they start, carry it
  daemon_pids=()

  step "munge key and munged"
  dd if=/dev/urandom of="$work/munge/key" bs=1024 count=1 status=none
  chmod 400 "$work/munge/key"
  # munged's socket is a file: reachable from every node of this machine.
  on_node "${NODES[0]}" munged --force --foreground --socket="$work/munge/socket" --key-file="$work/munge/key" \
    --pid-file="$work/munge/pid" --log-file="$work/log/munged.log" --seed-file="$work/munge/seed" &
  munged_pid=$!
  for _ in $(seq 1 50); do [[ -S $work/munge/socket ]] && break; sleep 0.1; done

  # Two free ports, held open together so they differ.
  local ctld_port slurmd_port i n
  read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
  {
    cat <<EOF
ClusterName=moetest
SlurmctldHost=${NODES[0]}(${ADDRESSES[0]})
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
SlurmdSpoolDir=$work/spool/%n
# Each node's own temporary folder (srun --mpi=pmix makes its directories there by fixed names).
TmpFS=$work/tmpfs/%n
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd-%n.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd-%n.log
# More CPUs than the machine's two cores, so a job can hold one task per rank.
SlurmdParameters=config_overrides
EOF
    for i in "${!NODES[@]}"; do
      echo "NodeName=${NODES[$i]} NodeAddr=${ADDRESSES[$i]} CPUs=8 State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
  } >"$SLURM_CONF"

  step "slurmctld and ${#NODES[@]} slurmd"
  on_node "${NODES[0]}" slurmctld -D -c -i >"$work/log/slurmctld.out" 2>&1 &
  daemon_pids+=($!)
  for n in "${NODES[@]}"; do
    mkdir -p "$work/spool/$n" "$work/tmpfs/$n"
    on_node "$n" slurmd -D -N "$n" >"$work/log/slurmd-$n.out" 2>&1 &
    daemon_pids+=($!)
  done
  for i in $(seq 1 300); do
    [[ $(slurm sinfo --noheader --format=%t 2>/dev/null | sort -u) == idle ]] && break
    ((i < 300)) || { echo "FAIL: the nodes never became idle"; slurm sinfo; exit 1; }
    sleep 0.1
  done
  step "nodes idle: $(slurm sinfo --noheader --format='%P %D %t %c %N')"
}

run_direct() {  # the default job (configs/runs/default.json's workload) by mpirun on this host
  source "$root/launch/mpirun_flags.sh"
  local tiny=$root/configs/models/switch-tiny
  local direct=(mpirun "${MPIRUN_FLAGS[@]}" -np 3 "$build/moe" generate --model "$tiny" --input "$tiny/prompts.jsonl"
    --batch-size 8 --max-new-tokens 24 --output "$work/direct.jsonl")
  step "+ ${direct[*]}"
  "${direct[@]}" >"$work/direct.out"
}

submit() {  # submit CONFIG [submit options]: sets $job and $job_status (0: COMPLETED)
  slurm "$root/launch/slurm/submit" "$@" --moe "$build/moe" --out-dir "$work/out" | tee "$work/submitted"
  job=$(grep -oE 'Submitted batch job [0-9]+' "$work/submitted" | grep -oE '[0-9]+$')
  local state='' until=$((SECONDS + deadline))
  while ((SECONDS < until)); do
    state=$(slurm scontrol show job "$job" | grep -oE 'JobState=[A-Z_]+' | cut -d= -f2)
    [[ $state =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING)$ ]] || break
    sleep 0.2
  done
  step "job $job ended: $(slurm scontrol show job "$job" | grep -oE 'JobState=[A-Z_]+|ExitCode=[0-9:]+' | tr '\n' ' ')"
  [[ ! $state =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING)$ ]] || { echo "FAIL: job $job still $state after ${deadline}s"; exit 1; }
  job_status=0
  [[ $state == COMPLETED ]] || job_status=1
  echo "--- job log moe-$job.log"
  cat "$work/out/moe-$job.log"
}
