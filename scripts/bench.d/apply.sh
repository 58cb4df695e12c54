# shellcheck shell=bash
# apply (issue 4): 500 objects (166 ConfigMaps, 167 Services, 166 Deployments of 1 replica and
# the default-deny NetworkPolicy ferry's lint asks for) to
# a fresh namespace of the local cluster with `ferry apply` and with
# `kubectl apply --server-side -f DIR` of the same rendered files, whole process each; then a
# no-change re-apply with each. Wall time and peak RSS come from /usr/bin/time; every run gets
# its own fresh namespace (created before the timing, deleted and waited for after). Between
# the first apply and the re-apply, and before the next run, the controllers finish rolling
# out the Deployments, so their work is not counted against the next command. ferry and
# kubectl runs alternate so the remaining background noise hits both alike.
# Goal: ferry at least 3x faster than kubectl on both, peak RSS under 100 MB.
# Runs: APPLY_BENCH_RUNS (default 3).

# apply_bench_project DIR: writes the benchmark's project (no environment file) into DIR.
apply_bench_project() {
  local i
  # The project: three lists, one template per kind, lint-clean objects.
  mkdir -p "$1/templates" "$1/environments"
  {
    printf 'app: bench\nvalues:\n'
    printf '  image: registry.example/bench/app@sha256:%064d\n' 0
    printf '  configmaps:\n'
    for ((i = 0; i < 166; i++)); do printf '    - {name: cm-%03d}\n' "$i"; done
    printf '  services:\n'
    for ((i = 0; i < 167; i++)); do printf '    - {name: svc-%03d, port: %d}\n' "$i" $((8000 + i)); done
    printf '  deployments:\n'
    for ((i = 0; i < 166; i++)); do printf '    - {name: app-%03d, port: %d}\n' "$i" $((8000 + i)); done
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
  local runs=${APPLY_BENCH_RUNS:-3} work i
  command -v /usr/bin/time >/dev/null ||
    { echo "/usr/bin/time is missing: apt-get install time" >&2; return 1; }
  work=$(mktemp -d)
  local namespaces=()
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN

  apply_bench_project "$work/project"

  local run=0
  # fresh_env NAME: a new namespace, the environment file pointing at it, the rendered files.
  fresh_env() {
    run=$((run + 1))
    local ns="bench-apply-$$-$run"
    namespaces+=("$ns")
    kubectl create namespace "$ns" >/dev/null
    printf 'context: ferry-local\nnamespace: %s\n' "$ns" >"$work/project/environments/$1.yaml"
    rm -rf "$work/rendered-$1"
    "$FERRY" render "$1" --project "$work/project" -o "$work/rendered-$1" >/dev/null 2>"$work/render.log" ||
      { echo "ferry render failed:" >&2; tail -n 20 "$work/render.log" >&2; return 1; }
    local n
    n=$(find "$work/rendered-$1" -name '*.yaml' | wc -l)
    [ "$n" = 500 ] || { echo "expected 500 rendered objects, got $n" >&2; return 1; }
  }
  # timed FILE CMD...: runs CMD under /usr/bin/time; appends "ms rss_kb" to FILE.
  timed() {
    local out=$1 start end rss
    shift
    start=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/last.log" 2>&1 ||
      { echo "benchmark command failed: $*" >&2; tail -n 20 "$work/last.log" >&2; return 1; }
    end=$(date +%s%N)
    rss=$(tail -n 1 "$work/rss")
    echo "$(((end - start) / 1000000)) $rss" >>"$work/$out"
  }
  # settle: the controllers finish rolling out the 166 Deployments (pods created, scheduled,
  # made ready by kwok), so that work does not land in the next measurement.
  settle() {
    kubectl -n "${namespaces[-1]}" wait --for=condition=Available deployment --all --timeout=600s >/dev/null
  }
  # drop: delete the namespace and wait until it is gone (untimed).
  drop() {
    kubectl delete namespace "${namespaces[-1]}" --timeout=600s >/dev/null
  }
  local ferry_apply=("$FERRY" apply bench --project "$work/project" --no-progress)
  for ((i = 0; i < runs; i++)); do
    fresh_env bench
    timed ferry-first "${ferry_apply[@]}"
    settle
    timed ferry-again "${ferry_apply[@]}"
    drop
    fresh_env bench
    timed kubectl-first kubectl apply --server-side -f "$work/rendered-bench"
    settle
    timed kubectl-again kubectl apply --server-side -f "$work/rendered-bench"
    drop
  done

  # median FILE COLUMN
  median() {
    cut -d' ' -f"$2" "$work/$1" | sort -n |
      awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f\n", m}'
  }
  local ff fa kf ka frss krss
  ff=$(median ferry-first 1)
  fa=$(median ferry-again 1)
  kf=$(median kubectl-first 1)
  ka=$(median kubectl-again 1)
  frss=$(cat "$work/ferry-first" "$work/ferry-again" | cut -d' ' -f2 | sort -n | tail -n 1)
  krss=$(cat "$work/kubectl-first" "$work/kubectl-again" | cut -d' ' -f2 | sort -n | tail -n 1)
  printf '%-52s %10s %10s\n' "apply 500 objects (median of $runs, fresh namespaces)" "ms" "peak MB"
  printf '%-52s %10s %10s\n' "ferry apply, first" "$ff" "$((frss / 1024))"
  printf '%-52s %10s %10s\n' "kubectl apply --server-side -f, first" "$kf" "$((krss / 1024))"
  printf '%-52s %10s\n' "ferry apply, no change" "$fa"
  printf '%-52s %10s\n' "kubectl apply --server-side -f, no change" "$ka"
  printf 'ferry is %sx faster on the first apply and %sx faster on the re-apply (goal >= 3x); ferry peak RSS %s MB (goal < 100)\n' \
    "$(ratio "$kf" "$ff")" "$(ratio "$ka" "$fa")" "$((frss / 1024))"
}
