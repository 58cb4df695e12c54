//! Settings that would be ignored are refused instead (issue 10: a flag or key that is parsed
//! and then ignored is a broken promise): cluster flags on commands that read no cluster, and
//! promotion gates that nothing enforces yet.

use crate::support::Demo;

#[test]
fn cluster_flags_on_commands_that_read_no_cluster_are_refused() {
    let demo = Demo::new();
    for args in [
        &["render", "staging", "--context", "prod"][..],
        &["lint", "staging", "--kubeconfig", "/nowhere"][..],
        &["image", "build", "web", "--context", "prod"][..],
    ] {
        let run = demo.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("never talks to a cluster"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

#[test]
fn a_release_past_an_unenforced_gate_is_refused_before_any_cluster_is_read() {
    let demo = Demo::new();
    // The demo's production file asks for an approval; no kubeconfig exists here, so an exit 2
    // naming the gate proves the refusal came first.
    let run = demo.run(&["release", "production"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("gates.approval"), "{}", run.stderr);
    assert!(run.stderr.contains("rollback"), "{}", run.stderr);

    demo.edit(
        "environments/production.yaml",
        "approval: true",
        "approval: false",
    );
    let run = demo.run(&["release", "production"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("gates.soak"), "{}", run.stderr);
}
