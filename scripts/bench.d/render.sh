# shellcheck shell=bash
# render: 1,000 objects (benches/fixtures) with `ferry render` vs `helm template`.
# Goal (issue 3): ferry at least 5x faster than helm template.
bench_render() {
  local fixtures=benches/fixtures ferry_ms helm_ms
  local n_ferry n_helm
  n_ferry=$("$FERRY" render bench --project "$fixtures/render-1000" | grep -c '^kind:')
  n_helm=$(helm template bench "$fixtures/helm-1000" --namespace bench | grep -c '^kind:')
  [ "$n_ferry" = 1000 ] && [ "$n_helm" = 1000 ] ||
    { echo "expected 1000 objects from both, got ferry=$n_ferry helm=$n_helm" >&2; return 1; }
  ferry_ms=$(median_ms "$BENCH_RUNS" "$FERRY" render bench --project "$fixtures/render-1000")
  helm_ms=$(median_ms "$BENCH_RUNS" helm template bench "$fixtures/helm-1000" --namespace bench)
  printf 'render 1000 objects: ferry %s ms (with lint), helm template %s ms: ferry is %sx faster\n' \
    "$ferry_ms" "$helm_ms" "$(ratio "$helm_ms" "$ferry_ms")"
}
