# shellcheck shell=bash
# release (issue 5): `ferry release` against `helm upgrade --install --wait` on the local
# cluster, with the 10 Deployments x 3 replicas of benches/fixtures/release-10 and the
# equivalent chart benches/fixtures/helm-release-10 (both written by
# benches/fixtures/generate_release.py; lint-clean under ferry's strict release lint).
#
# (a) Detection latency: the time from the moment the API server shows the rollout complete
#     to the moment the releasing process exits. Each run releases a change that rolls every
#     pod (value `rollout`), with kwok pods made Ready 2 s after they start (value
#     `readyDelay`, the pod annotation ferry.test/ready-delay), so the rollout really is in
#     progress while the tool waits. An independent watcher (`kubectl get --raw` watch of the
#     namespace's Deployments, from the resourceVersion of a list taken before the run,
#     timestamped on arrival with the same monotonic clock that times the tool's exit) records
#     when each Deployment first satisfies completion at a newer generation than before the
#     run: observedGeneration >= generation and updated = total = available = spec.replicas
#     (no old replicas, none unavailable). The release's rollout is complete when its last
#     Deployment is; latency = tool exit - that moment. Goal: ferry's median under 200 ms.
#     Compared with Helm 4's `--wait` (kstatus watcher) and `--wait=legacy` (polls every 2 s).
#     Runs: RELEASE_LATENCY_RUNS for ferry (default 7), RELEASE_LATENCY_PEER_RUNS for each
#     helm mode (default 3: helm's watcher takes about a minute a run here); each tool in its
#     own fresh namespace.
# (b) Whole process each: a first install into a fresh namespace, then an update that rolls
#     all 30 pods (`rollout` changed), with `ferry release` and with `helm upgrade --install
#     --wait` (same objects, pods Ready at once), in separate fresh namespaces created before
#     the timing and deleted (and waited for) after; ferry and helm runs alternate. Goal:
#     ferry at least 2x faster. Runs: RELEASE_BENCH_RUNS (default 3).
# (c) Where ferry's time goes: one more first install, with -vv, into a fresh namespace; the
#     engine's debug lines (src/ops/release/engine.rs: `phase="…" elapsed=…` per phase, and
#     `release done` with the engine's total) summed up per phase, beside the process's wall
#     time (logging makes this run a little slower than those of (b)).
# RELEASE_LATENCY_RUNS=0 skips (a), which takes minutes because of helm's watcher.

# release_latency_py: the watcher and timer of (a), written to a file by bench_release.
release_latency_py() {
  cat <<'PY'
"""latency.py NAMESPACE RUNS FIRST_ROLLOUT LOG -- COMMAND... ({n}: the rollout value)

For each run: list the namespace's Deployments (their generations, and a resourceVersion),
watch them from that resourceVersion, run COMMAND with {n} replaced, note when it exits, and
print one line: latency_ms total_ms (latency = exit - last Deployment complete)."""
import json
import subprocess
import sys
import threading
import time

ns, runs, first, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
command = sys.argv[sys.argv.index("--") + 1:]
WAIT_AFTER_EXIT = 20.0  # how long the watcher may lag behind the tool's exit, at most


def complete(d):
    spec, st = d.get("spec", {}), d.get("status", {})
    want = spec.get("replicas", 1)
    return (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want
            and st.get("replicas", 0) == want
            and st.get("availableReplicas", 0) == want
            and st.get("unavailableReplicas", 0) == 0)


def one(n):
    listed = json.loads(subprocess.run(
        ["kubectl", "get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments"],
        check=True, capture_output=True, text=True).stdout)
    before = {d["metadata"]["name"]: d["metadata"]["generation"] for d in listed["items"]}
    if not before:
        sys.exit(f"no Deployments in {ns}")
    rv = listed["metadata"]["resourceVersion"]
    done = {}  # name -> monotonic ns when first complete at a newer generation
    lock = threading.Condition()
    watch = subprocess.Popen(
        ["kubectl", "get", "--raw",
         f"/apis/apps/v1/namespaces/{ns}/deployments?watch=1&resourceVersion={rv}&timeoutSeconds=600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)

    def read():
        for line in watch.stdout:
            t = time.monotonic_ns()
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            d = ev.get("object", {})
            name = d.get("metadata", {}).get("name")
            if ev.get("type") not in ("ADDED", "MODIFIED") or name not in before:
                continue
            if d["metadata"]["generation"] > before[name] and complete(d):
                with lock:
                    done.setdefault(name, t)
                    lock.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    argv = [a.replace("{n}", str(n)) for a in command]
    start = time.monotonic_ns()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode
    end = time.monotonic_ns()
    if rc != 0:
        watch.kill()
        sys.exit(f"command failed (exit {rc}); see {log}")
    with lock:
        lock.wait_for(lambda: len(done) == len(before), timeout=WAIT_AFTER_EXIT)
        missing = sorted(set(before) - set(done))
        completed = max(done.values(), default=0)
    watch.kill()
    watch.wait()
    if missing:
        sys.exit(f"the tool exited, but {WAIT_AFTER_EXIT:.0f} s later the watcher had not seen "
                 f"these Deployments complete: {', '.join(missing)}")
    print(f"{(end - completed) / 1e6:.1f} {(end - start) / 1e6:.0f}", flush=True)


for i in range(runs):
    one(first + i)
    time.sleep(2)  # let kwok delete the old pods (1 s) before the next run
PY
}

bench_release() {
  needs_stack
  local runs=${RELEASE_BENCH_RUNS:-3} work i
  local lruns=${RELEASE_LATENCY_RUNS:-7} pruns=${RELEASE_LATENCY_PEER_RUNS:-3}
  local fixtures=benches/fixtures
  work=$(mktemp -d)
  release_ns=()
  # Any namespace still listed is deleted on the way out (failure or not). Every step ends in
  # `|| return 1`: under the runner's `set -e` a bare failure would exit the shell without
  # running this RETURN trap.
  # shellcheck disable=SC2064
  trap "release_cleanup '$work'" RETURN
  release_latency_py >"$work/latency.py"
  cp -r "$fixtures/release-10" "$work/project"

  local n_ferry n_helm
  n_ferry=$("$FERRY" render bench --project "$work/project" | grep -c '^kind:')
  n_helm=$(helm template bench "$fixtures/helm-release-10" --namespace bench | grep -c '^kind:')
  if [ "$n_ferry" != 31 ] || [ "$n_helm" != 31 ]; then
    echo "expected 31 objects from both, got ferry=$n_ferry helm=$n_helm" >&2
    return 1
  fi

  local ferry_rel=("$FERRY" release bench --project "$work/project" --no-progress)
  local helm_up=(helm upgrade --install bench "$fixtures/helm-release-10" --wait --timeout 5m)

  # --- (a) detection latency
  local tool
  for tool in ferry helm helm-legacy; do
    [ "$lruns" -gt 0 ] || break
    release_fresh_ns "$work" || return 1
    local ns=${release_ns[-1]} cmd=() n=$pruns
    case $tool in
      ferry) cmd=("${ferry_rel[@]}" --set 'rollout={n}' --set readyDelay=2s) n=$lruns ;;
      helm) cmd=("${helm_up[@]}" --namespace "$ns" --set 'rollout={n}' --set readyDelay=2s) ;;
      helm-legacy) cmd=("${helm_up[@]}" --wait=legacy --namespace "$ns" --set 'rollout={n}' --set readyDelay=2s) ;;
    esac
    # The first install (untimed), then n updates that roll every pod, 2 s to Ready each.
    release_run "$work" "${cmd[@]/\{n\}/1}" >/dev/null || return 1
    python3 "$work/latency.py" "$ns" "$n" 2 "$work/latency-$tool.log" -- "${cmd[@]}" \
      >"$work/latency-$tool" ||
      { echo "latency run of $tool failed:" >&2; tail -n 20 "$work/latency-$tool.log" >&2; return 1; }
    release_drop || return 1
  done

  # --- (b) whole release, first install and rolling update
  for ((i = 0; i < runs; i++)); do
    release_fresh_ns "$work" || return 1
    release_run "$work" "${ferry_rel[@]}" >>"$work/ferry-first" || return 1
    release_run "$work" "${ferry_rel[@]}" --set rollout=2 >>"$work/ferry-update" || return 1
    release_drop || return 1
    release_fresh_ns "$work" || return 1
    release_run "$work" "${helm_up[@]}" --namespace "${release_ns[-1]}" >>"$work/helm-first" || return 1
    release_run "$work" "${helm_up[@]}" --namespace "${release_ns[-1]}" --set rollout=2 >>"$work/helm-update" || return 1
    release_drop || return 1
  done

  # --- (c) one first install with -vv: the phases' times
  local vv_ms
  release_fresh_ns "$work" || return 1
  vv_ms=$(release_run "$work" "${ferry_rel[@]}" -vv) || return 1
  cp "$work/last.log" "$work/phases.log"
  release_drop || return 1

  local fl ff fu hf hu
  if [ "$lruns" -gt 0 ]; then
    local hl hll
    fl=$(release_median "$work/latency-ferry" 1)
    hl=$(release_median "$work/latency-helm" 1)
    hll=$(release_median "$work/latency-helm-legacy" 1)
    printf '(a) detection latency, rollout complete -> process exit (ms: median [each run]; ferry %s runs, helm %s each)\n' "$lruns" "$pruns"
    printf '  %-44s %8s  [%s]\n' "ferry release" "$fl" "$(cut -d' ' -f1 "$work/latency-ferry" | paste -sd' ')"
    printf '  %-44s %8s  [%s]\n' "helm upgrade --wait (watcher)" "$hl" "$(cut -d' ' -f1 "$work/latency-helm" | paste -sd' ')"
    printf '  %-44s %8s  [%s]\n' "helm upgrade --wait=legacy (2 s polls)" "$hll" "$(cut -d' ' -f1 "$work/latency-helm-legacy" | paste -sd' ')"
    printf '  ferry median %s ms (goal < 200 ms)\n' "$fl"
  else
    printf '(a) detection latency: skipped (RELEASE_LATENCY_RUNS=0)\n'
  fi
  ff=$(release_median "$work/ferry-first" 1)
  fu=$(release_median "$work/ferry-update" 1)
  hf=$(release_median "$work/helm-first" 1)
  hu=$(release_median "$work/helm-update" 1)
  printf '(b) release 10 Deployments x 3 replicas, whole process (ms, median of %s, fresh namespaces)\n' "$runs"
  printf '  %-44s %8s  [%s]\n' "ferry release, first install" "$ff" "$(paste -sd' ' "$work/ferry-first")"
  printf '  %-44s %8s  [%s]\n' "helm upgrade --install --wait, first install" "$hf" "$(paste -sd' ' "$work/helm-first")"
  printf '  %-44s %8s  [%s]\n' "ferry release, rolling update" "$fu" "$(paste -sd' ' "$work/ferry-update")"
  printf '  %-44s %8s  [%s]\n' "helm upgrade --install --wait, rolling update" "$hu" "$(paste -sd' ' "$work/helm-update")"
  printf '  ferry is %sx faster on the first install and %sx faster on the update (goal >= 2x)\n' \
    "$(ratio "$hf" "$ff")" "$(ratio "$hu" "$fu")"
  printf '(c) where ferry'"'"'s first install goes (one run with -vv, wall %s ms; ms per phase, in order)\n' "$vv_ms"
  release_phases "$work/phases.log" "$vv_ms" || return 1
}

# release_phases LOG WALL_MS: the engine's phase lines of LOG (`phase="NAME" elapsed=DURATION`,
# and `release done elapsed=DURATION`), in ms, with their sum and what lies outside them.
release_phases() {
  # ANSI colours off (the log went to a file, but be safe), then one "name ms" per line.
  sed 's/\x1b\[[0-9;]*m//g' "$1" | awk -v wall="$2" '
    function ms(d,   v) {
      v = d; sub(/[^0-9.]+$/, "", v)
      if (d ~ /ns$/) return v / 1e6
      if (d ~ /µs$|us$/) return v / 1e3
      if (d ~ /ms$/) return v
      if (d ~ /s$/) return v * 1e3
      return v
    }
    match($0, /phase="[^"]*"/) {
      name = substr($0, RSTART + 7, RLENGTH - 8)
      if (match($0, /elapsed=[0-9.]+[a-zµ]+/)) {
        t = ms(substr($0, RSTART + 8, RLENGTH - 8))
        if (!(name in sum)) order[++n] = name
        sum[name] += t
      }
      next
    }
    /release done/ && match($0, /elapsed=[0-9.]+[a-zµ]+/) { total = ms(substr($0, RSTART + 8, RLENGTH - 8)) }
    END {
      if (n == 0) { print "  no phase lines in the -vv log" > "/dev/stderr"; exit 1 }
      for (i = 1; i <= n; i++) { printf "  %-44s %8.1f\n", order[i], sum[order[i]]; all += sum[order[i]] }
      printf "  %-44s %8.1f\n", "sum of the phases", all
      if (total > 0) {
        printf "  %-44s %8.1f\n", "engine total (release done)", total
        printf "  %-44s %8.1f\n", "  in the engine, between phases", total - all
        printf "  %-44s %8.1f\n", "outside (process start, CLI, output, exit)", wall - total
      }
    }'
}

# release_fresh_ns WORK: a new namespace (untimed), the ferry environment pointing at it.
release_fresh_ns() {
  release_seq=$((${release_seq:-0} + 1))
  local ns="bench-release-$$-$release_seq"
  release_ns+=("$ns")
  kubectl create namespace "$ns" >/dev/null || return 1
  printf 'context: ferry-local\nnamespace: %s\n' "$ns" >"$1/project/environments/bench.yaml"
}

# release_run WORK CMD...: runs CMD (output to WORK/last.log) and prints its wall time in ms.
release_run() {
  local work=$1 start end
  shift
  start=$(date +%s%N)
  "$@" >"$work/last.log" 2>&1 ||
    { echo "benchmark command failed: $*" >&2; tail -n 20 "$work/last.log" >&2; return 1; }
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}

# release_drop: deletes the newest namespace and waits until it is gone (untimed).
release_drop() {
  kubectl delete namespace "${release_ns[-1]}" --timeout=300s >/dev/null
  unset 'release_ns[-1]'
}

release_cleanup() {
  trap - RETURN
  local ns
  for ns in "${release_ns[@]}"; do
    kubectl delete namespace "$ns" --ignore-not-found --timeout=300s >/dev/null || true
  done
  release_ns=()
  rm -rf "$1"
}

# release_median FILE COLUMN
release_median() {
  cut -d' ' -f"$2" "$1" | sort -n |
    awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f\n", m}'
}
