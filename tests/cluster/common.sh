# Shared by tests/cluster/up and tests/cluster/down (sourced, not run).
# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this

cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$cluster_dir/../.." && pwd)
# shellcheck source=tests/cluster/versions
. "$cluster_dir/versions"

BIN=$TESTCLUSTER_BIN
# All state of a running stack: pids/, logs/, pki/, etcd/, registry/, s3/, kubeconfig, env.
W=$repo_root/target/testcluster
ENV_FILE=$W/env

# Start order; down stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok registry s3s-fs moto)

# The executable each component runs, used to check that a recorded PID is still ours.
component_exe() {
  case $1 in
    registry) command -v docker-registry ;;
    s3s-fs) readlink -f "$BIN/s3s-fs" ;;
    moto) readlink -f "$MOTO_VENV/bin/python" ;; # moto_server is a script run by the venv's python
    *) echo "$BIN/$1" ;;
  esac
}

log() { printf '[%s %s] %s\n' "${0##*/}" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Serialises up and down (two at once would trample each other's state). A down run by up
# inherits up's lock (FERRY_TESTCLUSTER_LOCKED) instead of waiting for it.
take_lock() {
  [ "${FERRY_TESTCLUSTER_LOCKED:-}" = 1 ] && return 0
  mkdir -p "$repo_root/target"
  exec 9>"$repo_root/target/.testcluster.lock"
  if ! flock -w 120 9; then
    die "another tests/cluster/up or down is still running (lock: $repo_root/target/.testcluster.lock)"
  fi
  export FERRY_TESTCLUSTER_LOCKED=1
}

pid_of() {
  local f=$W/pids/$1.pid
  [ -f "$f" ] && cat "$f"
}

# True when the recorded PID of component $1 is alive and still runs that component's executable
# (guards against a recycled PID: we only ever signal processes we started).
# During start-up use `running` instead: the recorded PID is the subshell that is about to
# exec the component, so for a moment its executable is still bash.
alive() {
  local pid exe want
  pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink -f "/proc/$pid/exe" 2>/dev/null) || return 1
  want=$(readlink -f "$(component_exe "$1")" 2>/dev/null) || return 1
  [ "$exe" = "$want" ]
}

# True when the process recorded for component $1 (just started by this script) still runs,
# whether or not it has exec'd the component yet.
running() {
  local pid
  pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
