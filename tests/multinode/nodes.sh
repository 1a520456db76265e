#!/usr/bin/env bash
# Two hosts on one machine: network namespaces ID-node1 and ID-node2 joined by a veth pair
# (10.77.0.1 and 10.77.0.2 on a /24 that exists only between them). Every command started on a
# node enters its network namespace with a mount and UTS namespace of its own: the node's hostname,
# and a private hosts file naming both nodes bound over /etc/hosts (everything else, /sys and its
# cgroups included, as on the host). Nothing is routed to any other network.
#
#   nodes.sh up ID          create both nodes; a guard process reaps them when the caller (the
#                           shell that ran `nodes.sh up`) dies, even by SIGKILL
#   nodes.sh down ID        kill every process on either node, delete the namespaces (and with them
#                           the veth pair) and the hosts files; idempotent
#   nodes.sh reap ID        down, after killing the processes that carry MOE_NODES_ID=ID in their
#                           environment (the dead caller's helpers, outside the nodes)
#   nodes.sh exec ID NODE CMD...   run CMD on NODE (node1 or node2)
#   nodes.sh left ID        print what of ID is still there (namespaces, links, processes, files)
#
# tests/multinode/agent.sh is Open MPI's remote-launch agent for these nodes (instead of ssh).
set -uo pipefail
cmd=${1:?usage: nodes.sh up|down|reap|exec|left ID ...}
id=${2:?usage: nodes.sh $cmd ID ...}
shift 2
[[ $id =~ ^[a-z0-9]{1,8}$ ]] || { echo "nodes.sh: ID must be 1-8 of [a-z0-9] (got '$id')" >&2; exit 2; }
NODES=(node1 node2)
declare -A ADDRESS=([node1]=10.77.0.1 [node2]=10.77.0.2)
ns() { echo "moe$id-$1"; }
files=/run/moe-nodes-$id  # the hosts file

down() {
  local node pids
  for node in "${NODES[@]}"; do
    if ip netns list | grep -qw "$(ns "$node")"; then
      # Twice: a dying mpirun may start nothing new, but a killed parent may have left children.
      for _ in 1 2; do
        pids=$(ip netns pids "$(ns "$node")" 2>/dev/null)
        [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
        sleep 0.2
      done
      ip netns del "$(ns "$node")" 2>/dev/null
    fi
  done
  rm -rf "$files"
  return 0
}

reap() {
  local pids
  pids=$("$(dirname "$0")/../pids_with_env.sh" "MOE_NODES_ID=$id")
  [[ -n $pids ]] && kill -KILL $pids 2>/dev/null
  down
}

left() {
  local node found=0
  for node in "${NODES[@]}"; do
    if ip netns list | grep -qw "$(ns "$node")"; then
      echo "namespace $(ns "$node"): processes $(ip netns pids "$(ns "$node")" | tr '\n' ' ')"
      found=1
    fi
  done
  [[ -e $files ]] && { echo "files $files"; found=1; }
  ip -o link show | grep -q "mv$id" && { echo "links: $(ip -o link show | grep "mv$id")"; found=1; }
  return $found
}

up() {
  (($(id -u) == 0)) || { echo "nodes.sh: creating network namespaces needs root" >&2; return 1; }
  if ! command -v ip >/dev/null; then
    echo "+ apt-get install iproute2"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null || return 1
  fi
  down
  local node
  mkdir -p "$files"
  {
    echo "127.0.0.1 localhost"
    for node in "${NODES[@]}"; do echo "${ADDRESS[$node]} $node"; done
  } >"$files/hosts"
  for node in "${NODES[@]}"; do
    ip netns add "$(ns "$node")" || return 1
    ip -n "$(ns "$node")" link set lo up
  done
  ip link add "mv${id}a" netns "$(ns node1)" type veth peer name "mv${id}b" netns "$(ns node2)" || return 1
  ip -n "$(ns node1)" addr add "${ADDRESS[node1]}/24" dev "mv${id}a"
  ip -n "$(ns node2)" addr add "${ADDRESS[node2]}/24" dev "mv${id}b"
  ip -n "$(ns node1)" link set "mv${id}a" up
  ip -n "$(ns node2)" link set "mv${id}b" up
  # The guard: outlives a SIGKILLed caller (own session, no terminal) and reaps the nodes.
  local caller=$PPID self
  self=$(readlink -f "$0")
  setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; exec "$2" reap "$3"' guard \
    "$caller" "$self" "$id" </dev/null >/dev/null 2>&1 &
}

on() {
  local node=$1
  shift
  [[ -n ${ADDRESS[$node]:-} ]] || { echo "nodes.sh: no node '$node' (node1, node2)" >&2; return 2; }
  exec nsenter --net="/run/netns/$(ns "$node")" unshare --mount --uts --propagation private \
    bash -c 'mount --bind "$2" /etc/hosts && hostname "$1" && shift 2 && exec "$@"' nodes "$node" "$files/hosts" "$@"
}

case $cmd in
  up) up ;;
  down) down ;;
  reap) reap ;;
  exec) on "$@" ;;
  left) left ;;
  *) echo "nodes.sh: unknown command $cmd (up, down, reap, exec, left)" >&2; exit 2 ;;
esac
