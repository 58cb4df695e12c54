# shellcheck shell=bash
# backup (issue 11): `ferry backup create` of an environment of 1,000 objects (999 ConfigMaps
# and one Deployment running a 50 MB single-layer image pushed to the local registry by
# digest) to a fresh directory store: the first backup (every image blob pulled with digest
# verification, encrypted and stored) and a second when nothing changed (blobs already
# stored, only the archive written). Whole process each, wall time. Prints objects per second
# and MB/s, and Velero's published figures (reference/release-and-dr.md §B5) beside them.
# Goal: under 3 s the first time, under 1 s when nothing changed.
# Runs: BACKUP_BENCH_RUNS (default 3).

bench_backup() {
  needs_stack
  local runs=${BACKUP_BENCH_RUNS:-3} work ns i key recipient ref repo digest
  work=$(mktemp -d)
  ns=bench-backup-$$
  # 999 ConfigMaps of ~300 bytes each, applied once (not timed).
  kubectl create namespace "$ns" >/dev/null
  for ((i = 0; i < 999; i++)); do
    printf -- '---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%03d, labels: {app: bench}}\ndata: {NAME: "cm-%03d", GREETING: "hello from the backup benchmark, object %03d of 999"}\n' "$i" "$i" "$i"
  done >"$work/cms.yaml"
  kubectl apply --server-side -f "$work/cms.yaml" -n "$ns" >/dev/null
  # A 50 MB layer of incompressible bytes, pushed with crane.
  head -c $((50 * 1024 * 1024)) /dev/urandom >"$work/blob.bin"
  tar -C "$work" -cf "$work/layer.tar" blob.bin
  repo=$FERRY_TEST_REGISTRY/bench/backup-$$
  ref=$(crane append --insecure -f "$work/layer.tar" -t "$repo:v1" 2>/dev/null)
  digest=${ref#*@}
  kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "$repo@$digest"}]}
YAML
  key=$work/key.txt
  recipient=$("$FERRY" backup keygen --output-file "$key" 2>/dev/null)
  mkdir -p "$work/project/environments"
  printf 'app: bench\nbackup:\n  recipients: [%s]\n  store: %s\n' "$recipient" "$work/store" >"$work/project/ferry.yaml"
  printf 'context: ferry-local\nnamespace: %s\n' "$ns" >"$work/project/environments/b.yaml"

  local first=() again=() start end objects bytes
  for ((i = 0; i < runs; i++)); do
    rm -rf "$work/store"
    start=$(date +%s%N)
    "$FERRY" backup create b --insecure --project "$work/project" --output json >"$work/first.json"
    end=$(date +%s%N)
    first+=($(((end - start) / 1000000)))
    start=$(date +%s%N)
    "$FERRY" backup create b --insecure --project "$work/project" --output json >"$work/again.json"
    end=$(date +%s%N)
    again+=($(((end - start) / 1000000)))
  done
  objects=$(grep '"event":"backup"' "$work/first.json" | sed 's/.*"objects":\([0-9]*\).*/\1/')
  bytes=$(grep '"event":"backup"' "$work/first.json" | sed 's/.*"bytes_written":\([0-9]*\).*/\1/')
  local reused
  reused=$(grep '"event":"backup"' "$work/again.json" | sed 's/.*"blobs_uploaded":\([0-9]*\).*/\1/')
  "$FERRY" backup verify b --all --identity "$key" --project "$work/project" >/dev/null 2>&1 ||
    echo "warning: verify of the benchmark's backups failed" >&2
  local f a
  f=$(printf '%s\n' "${first[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  a=$(printf '%s\n' "${again[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf 'ferry backup create, %s objects + 50 MB image (median of %s)\n' "$objects" "$runs"
  awk -v ms="$f" -v n="$objects" -v b="$bytes" 'BEGIN {
    printf "  first backup:        %6.2f s  %7.0f objects/s  %6.1f MB/s written (goal < 3 s)\n", ms/1000, n/(ms/1000), b/1e6/(ms/1000) }'
  awk -v ms="$a" -v n="$objects" -v u="$reused" 'BEGIN {
    printf "  nothing changed:     %6.2f s  %7.0f objects/s  %s blobs uploaded (goal < 1 s)\n", ms/1000, n/(ms/1000), u }'
  awk -v ms="$f" -v n="$objects" 'BEGIN { r = n/(ms/1000);
    printf "  Velero (B5): 1.11 ~170 objects/s, 1.16.2 ~3 objects/s past 5k objects (velero#9169): ferry %.0fx / %.0fx\n", r/170, r/3 }'
  kubectl delete namespace "$ns" --wait=false >/dev/null
  rm -rf "$work"
}
