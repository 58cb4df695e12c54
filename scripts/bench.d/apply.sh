# shellcheck shell=bash
# apply (issue 4), whole process each, on the local cluster, every run in its own fresh
# namespace (created before the timing, deleted and waited for after). Wall time and peak RSS
# come from /usr/bin/time. ferry and kubectl runs alternate so the remaining background noise
# hits both alike.
#
# (a) 500 objects (166 ConfigMaps, 167 Services, 166 Deployments of 1 replica and the
#     default-deny NetworkPolicy ferry's lint asks for) with `ferry apply` and with
#     `kubectl apply --server-side -f DIR` of the same rendered files; then a no-change
#     re-apply with each. Between the first apply and the re-apply, and before the next run,
#     the controllers finish rolling out the Deployments, so their work is not counted
#     against the next command. Goal: ferry at least 3x faster than kubectl on the first
#     apply and 10x on the re-apply, peak RSS under 100 MB. Runs: APPLY_BENCH_RUNS (default 3).
# (b) 5,000 objects (1,666 ConfigMaps, 1,667 Services, 1,666 Deployments and the
#     NetworkPolicy), first apply only, ferry vs kubectl as in (a); the deletion of each
#     namespace (waited for) ends the controllers' work before the next command. Beside them
#     the API server's own ceiling, in the same run: examples/apply_ceiling.rs, a bare client
#     that only PATCHes the same rendered objects as apply patches (field manager bench,
#     HTTP/2, no discovery, list or dry run) into a fresh namespace, timed from its first
#     write to its last answer, with APPLY_CEILING_PARALLEL requests in flight (default 32,
#     ferry's default concurrency; a list such as "16 32 64" takes the best, each in its own
#     namespace). Prints ferry's objects/s against the ceiling's. Goal: ferry peak RSS under
#     150 MB. Runs: APPLY_BENCH_RUNS_5000 (default 1).

# apply_bench_project DIR [COUNT]: writes the benchmark's project of COUNT objects (default
# 500; one NetworkPolicy, the rest ConfigMaps, Services and Deployments in thirds) into DIR,
# without an environment file.
apply_bench_project() {
  local i count=${2:-500} cms svcs
  cms=$(((count - 1) / 3))
  svcs=$((count - 1 - 2 * cms))
  # The project: three lists, one template per kind, lint-clean objects.
  mkdir -p "$1/templates" "$1/environments"
  {
    printf 'app: bench\nvalues:\n'
    printf '  image: registry.example/bench/app@sha256:%064d\n' 0
    printf '  configmaps:\n'
    for ((i = 0; i < cms; i++)); do printf '    - {name: cm-%03d}\n' "$i"; done
    printf '  services:\n'
    for ((i = 0; i < svcs; i++)); do printf '    - {name: svc-%03d, port: %d}\n' "$i" $((8000 + i)); done
    printf '  deployments:\n'
    for ((i = 0; i < cms; i++)); do printf '    - {name: app-%03d, port: %d}\n' "$i" $((8000 + i)); done
  } >"$1/ferry.yaml"
  cat >"$1/templates/configmaps.yaml.hbs" <<'HBS'
{{#each values.configmaps}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{this.name}}
  labels: {app: {{this.name}}}
data:
  NAME: {{quote this.name}}
  GREETING: "hello from the apply benchmark"
{{/each}}
HBS
  cat >"$1/templates/networkpolicy.yaml.hbs" <<'HBS'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
HBS
  cat >"$1/templates/services.yaml.hbs" <<'HBS'
{{#each values.services}}
---
apiVersion: v1
kind: Service
metadata:
  name: {{this.name}}
  labels: {app: {{this.name}}}
spec:
  selector: {app: {{this.name}}}
  ports: [{port: 80, targetPort: {{this.port}}}]
{{/each}}
HBS
  cat >"$1/templates/deployments.yaml.hbs" <<'HBS'
{{#each values.deployments}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{this.name}}
  labels: {app: {{this.name}}}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{this.name}}}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata:
      labels: {app: {{this.name}}}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: app
          image: {{../values.image}}
          ports: [{containerPort: {{this.port}}}]
          readinessProbe: {httpGet: {path: /healthz, port: {{this.port}}}}
          lifecycle: {preStop: {sleep: {seconds: 5}}}
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {cpu: 100m, memory: 32Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
{{/each}}
HBS
}

bench_apply() {
  needs_stack
  local runs=${APPLY_BENCH_RUNS:-3} runs_big=${APPLY_BENCH_RUNS_5000:-1}
  local parallel=${APPLY_CEILING_PARALLEL:-32} work i p
  command -v /usr/bin/time >/dev/null ||
    { echo "/usr/bin/time is missing: apt-get install time" >&2; return 1; }
  cargo build --release --quiet --example apply_ceiling
  local ceiling=$PWD/target/release/examples/apply_ceiling
  work=$(mktemp -d)
  apply_ns=()
  # Any namespace still listed is deleted on the way out, on return and when a failed step
  # exits the shell (set -e skips RETURN traps).
  # shellcheck disable=SC2064
  trap "apply_cleanup '$work'" RETURN EXIT

  apply_bench_project "$work/p500" 500
  apply_bench_project "$work/p5000" 5000

  # fresh_env COUNT: a new namespace, the environment file of project pCOUNT pointing at it,
  # the rendered files in WORK/rendered-COUNT.
  fresh_env() {
    apply_seq=$((${apply_seq:-0} + 1))
    local ns="bench-apply-$$-$apply_seq" n
    apply_ns+=("$ns")
    kubectl create namespace "$ns" >/dev/null || return 1
    printf 'context: ferry-local\nnamespace: %s\n' "$ns" >"$work/p$1/environments/bench.yaml"
    rm -rf "$work/rendered-$1"
    "$FERRY" render bench --project "$work/p$1" -o "$work/rendered-$1" >/dev/null 2>"$work/render.log" ||
      { echo "ferry render failed:" >&2; tail -n 20 "$work/render.log" >&2; return 1; }
    n=$(find "$work/rendered-$1" -name '*.yaml' | wc -l)
    [ "$n" = "$1" ] || { echo "expected $1 rendered objects, got $n" >&2; return 1; }
  }
  # timed [-k] FILE CMD...: runs CMD under /usr/bin/time; appends "ms rss_kb" to FILE. A
  # failed CMD returns 1; with -k it is noted instead (FILE.failed gets its figures and its
  # error lines, the section fails at the end) so the other tools are still measured.
  timed() {
    local keep=0 out start end rss ok=1
    [ "$1" = -k ] && { keep=1; shift; }
    out=$1
    shift
    start=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/last.log" 2>&1 || ok=0
    end=$(date +%s%N)
    rss=$(tail -n 1 "$work/rss")
    if [ "$ok" = 0 ]; then
      echo "benchmark command failed: $*" >&2
      tail -n 20 "$work/last.log" >&2
      [ "$keep" = 1 ] || return 1
      apply_failed=1
      echo "$(((end - start) / 1000000)) $rss" >>"$work/$out.failed"
      grep -E '^(error|caused by):' "$work/last.log" >>"$work/$out.errors" || true
      return 0
    fi
    echo "$(((end - start) / 1000000)) $rss" >>"$work/$out"
  }
  # settle: the controllers finish rolling out the Deployments (pods created, scheduled,
  # made ready by kwok), so that work does not land in the next measurement.
  settle() {
    kubectl -n "${apply_ns[-1]}" wait --for=condition=Available deployment --all --timeout=600s >/dev/null
  }
  # drop: delete the newest namespace and wait until it is gone (untimed).
  drop() {
    kubectl delete namespace "${apply_ns[-1]}" --timeout=900s >/dev/null || return 1
    unset 'apply_ns[-1]'
  }
  local ferry_apply=("$FERRY" apply bench --no-progress --project)
  apply_failed=0

  # --- (a) 500 objects
  for ((i = 0; i < runs; i++)); do
    fresh_env 500 || return 1
    timed ferry-first "${ferry_apply[@]}" "$work/p500" || return 1
    settle || return 1
    timed ferry-again "${ferry_apply[@]}" "$work/p500" || return 1
    drop || return 1
    fresh_env 500 || return 1
    timed kubectl-first kubectl apply --server-side -f "$work/rendered-500" || return 1
    settle || return 1
    timed kubectl-again kubectl apply --server-side -f "$work/rendered-500" || return 1
    drop || return 1
  done

  # median FILE COLUMN
  median() {
    cut -d' ' -f"$2" "$work/$1" | sort -n |
      awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f\n", m}'
  }
  # peak FILE...: the largest RSS of those runs, in MB.
  peak() { (cd "$work" && cat "$@") | cut -d' ' -f2 | sort -n | tail -n 1 | awk '{printf "%d", $1 / 1024}'; }
  # per_s COUNT MS: objects per second.
  per_s() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0) ? n / (ms / 1000) : 0 }'; }
  local ff fa kf ka frss krss
  ff=$(median ferry-first 1)
  fa=$(median ferry-again 1)
  kf=$(median kubectl-first 1)
  ka=$(median kubectl-again 1)
  frss=$(peak ferry-first ferry-again)
  krss=$(peak kubectl-first kubectl-again)
  printf '%-60s %10s %10s\n' "(a) apply 500 objects (median of $runs, fresh namespaces)" "ms" "peak MB"
  printf '%-60s %10s %10s\n' "  ferry apply, first" "$ff" "$frss"
  printf '%-60s %10s %10s\n' "  kubectl apply --server-side -f, first" "$kf" "$krss"
  printf '%-60s %10s\n' "  ferry apply, no change" "$fa"
  printf '%-60s %10s\n' "  kubectl apply --server-side -f, no change" "$ka"
  printf '  ferry is %sx faster on the first apply (goal >= 3x) and %sx faster on the re-apply (goal >= 10x); ferry peak RSS %s MB (goal < 100)\n' \
    "$(ratio "$kf" "$ff")" "$(ratio "$ka" "$fa")" "$frss"

  # --- (b) 5,000 objects, and the API server's ceiling
  for ((i = 0; i < runs_big; i++)); do
    fresh_env 5000 || return 1
    timed -k ferry-5000 "${ferry_apply[@]}" "$work/p5000" || return 1
    drop || return 1
    fresh_env 5000 || return 1
    timed kubectl-5000 kubectl apply --server-side -f "$work/rendered-5000" || return 1
    drop || return 1
    for p in $parallel; do
      fresh_env 5000 || return 1
      timed ceiling-process "$ceiling" "$work/rendered-5000" "${apply_ns[-1]}" \
        --parallel "$p" --context ferry-local || return 1
      # "objects writes_ms" from its stdout, and the parallelism.
      echo "$(grep -E '^[0-9]+ [0-9]+$' "$work/last.log") $p" >>"$work/ceiling-$i"
      drop || return 1
    done
    # The best parallelism of this run.
    sort -n -k2 "$work/ceiling-$i" | head -n 1 | cut -d' ' -f2,3 >>"$work/ceiling"
  done

  local bf bk bkrss bfrss cw cp cproc fops cops
  local ffail=""
  if [ -s "$work/ferry-5000" ]; then
    bf=$(median ferry-5000 1)
    bfrss=$(peak ferry-5000)
  else
    # Every ferry run failed: its figures up to the failure, marked so.
    bf=$(median ferry-5000.failed 1)
    bfrss=$(peak ferry-5000.failed)
    ffail=" FAILED"
  fi
  bk=$(median kubectl-5000 1)
  bkrss=$(peak kubectl-5000)
  cw=$(median ceiling 1)
  # The parallelism of the median run (of the only one, by default).
  cp=$(sort -n -k1 "$work/ceiling" | awk -v m="$cw" '$1 >= m {print $2; exit}')
  cproc=$(median ceiling-process 1)
  fops=$(per_s 5000 "$bf")
  cops=$(per_s 5000 "$cw")
  printf '%-60s %10s %10s %10s\n' "(b) apply 5,000 objects (median of $runs_big, fresh namespaces)" "ms" "peak MB" "objects/s"
  printf '%-60s %10s %10s %10s\n' "  ferry apply, first$ffail" "$bf" "$bfrss" "$fops"
  printf '%-60s %10s %10s %10s\n' "  kubectl apply --server-side -f, first" "$bk" "$bkrss" "$(per_s 5000 "$bk")"
  printf '%-60s %10s %10s %10s\n' "  API server ceiling: bare SSA PATCH, writes only ($cp in flight)" "$cw" "" "$cops"
  printf '%-60s %10s\n' "    the same client, whole process (median)" "$cproc"
  printf '  ferry is %sx faster than kubectl on the first apply; ferry peak RSS %s MB (goal < 150)\n' \
    "$(ratio "$bk" "$bf")" "$bfrss"
  printf '  ferry %s objects/s vs the ceiling %s objects/s (best of APPLY_CEILING_PARALLEL="%s"): ferry at %s%% of the limit\n' \
    "$fops" "$cops" "$parallel" "$(awk -v f="$fops" -v c="$cops" 'BEGIN { printf "%.0f", (c > 0) ? 100 * f / c : 0 }')"
  if [ "$apply_failed" = 1 ]; then
    printf '  ferry apply of 5,000 objects failed in %s of %s runs (figures up to the failure):\n' \
      "$(wc -l <"$work/ferry-5000.failed")" "$runs_big"
    awk '!seen[$0]++ { print "    " $0 }' "$work/ferry-5000.errors"
    return 1
  fi
}

# apply_cleanup WORK: deletes any namespace still listed and the work directory.
apply_cleanup() {
  trap - RETURN EXIT
  local ns
  for ns in "${apply_ns[@]}"; do
    kubectl delete namespace "$ns" --ignore-not-found --timeout=900s >/dev/null || true
  done
  apply_ns=()
  rm -rf "$1"
}
