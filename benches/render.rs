//! Rendering an environment of 1,000 objects (benches/fixtures/render-1000), in process:
//! template compilation + render + YAML parse + ordering, then the lint over the result.
//! `scripts/bench` compares the whole `ferry render` process with `helm template`.

use std::collections::BTreeMap;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ferry::policy::{self, LintContext};
use ferry::project::Project;
use ferry::render::{self, Templates};

fn render_1000(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/render-1000");
    let project = Project::load(&root).expect("the bench fixture loads");
    let env = project
        .resolve("bench", &[])
        .expect("the bench environment resolves");
    let templates = Templates::load(&root).expect("the bench templates load");
    let pinned = BTreeMap::new();
    let bundle = render::render(&templates, &env, &pinned).expect("the bench fixture renders");
    assert_eq!(bundle.objects.len(), 1000);

    let mut group = c.benchmark_group("render-1000");
    group.sample_size(20);
    group.bench_function("render", |b| {
        b.iter(|| render::render(&templates, &env, &pinned))
    });
    group.bench_function("render+yaml", |b| {
        b.iter(|| render::render(&templates, &env, &pinned).map(|b| b.to_yaml()))
    });
    group.bench_function("lint", |b| {
        b.iter(|| policy::lint(&bundle.objects, &LintContext::default()))
    });
    group.finish();
}

criterion_group!(benches, render_1000);
criterion_main!(benches);
