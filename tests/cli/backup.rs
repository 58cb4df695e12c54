//! `ferry backup` without a cluster (issue 11): keygen, and every refusal that must come
//! before anything is read or written.

use std::os::unix::fs::PermissionsExt as _;

use insta::assert_snapshot;

use crate::support::Demo;

#[test]
fn keygen_writes_a_private_identity_once_and_prints_its_recipient() {
    let demo = Demo::new();
    let run = demo.run(&["backup", "keygen", "--output-file", "key.txt"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let recipient = run.stdout.trim();
    assert!(
        recipient.starts_with("age1") && recipient.len() == 62,
        "{recipient}"
    );
    let text = std::fs::read_to_string(demo.file("key.txt")).unwrap();
    assert!(
        text.contains(&format!("# public key: {recipient}")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("AGE-SECRET-KEY-1")),
        "{text}"
    );
    let mode = std::fs::metadata(demo.file("key.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = demo.run(&["backup", "keygen", "--output-file", "key.txt"]);
    assert_snapshot!(again.snapshot(), @r"
    exit code: 2
    ----- stdout -----
    ----- stderr -----
    error: key.txt exists: ferry backup keygen never writes over a file
    hint: choose another --output-file
    ");
    assert_eq!(std::fs::read_to_string(demo.file("key.txt")).unwrap(), text);
}

#[test]
fn keygen_without_a_file_prints_the_identity_like_age_keygen() {
    let demo = Demo::new();
    let run = demo.run(&["backup", "keygen"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("\nAGE-SECRET-KEY-1"), "{}", run.stdout);
    assert!(
        run.stderr.starts_with("note: public key: age1"),
        "{}",
        run.stderr
    );
}

#[test]
fn create_without_recipients_is_refused_before_any_cluster_is_reached() {
    let demo = Demo::new();
    let run = demo.run(&["backup", "create", "staging"]);
    assert_snapshot!(run.snapshot(), @r"
    exit code: 2
    ----- stdout -----
    ----- stderr -----
    error: `backup.recipients` in ferry.yaml lists no age recipient
    hint: run `ferry backup keygen --output-file KEY` and add the printed age1… recipient to `backup.recipients`
    ");
}

#[test]
fn a_malformed_recipient_is_named() {
    let demo = Demo::new();
    demo.edit(
        "ferry.yaml",
        "  keepWeekly: 4\n",
        "  keepWeekly: 4\n  recipients: [age1nope]\n",
    );
    let run = demo.run(&["backup", "create", "staging"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`age1nope` in `backup.recipients` is not an age recipient"),
        "{}",
        run.stderr
    );
}

#[test]
fn retention_on_a_directory_store_is_refused_not_ignored() {
    let demo = Demo::new();
    let key = demo.run(&["backup", "keygen", "-o", "key.txt"]);
    let recipient = key.stdout.trim();
    demo.edit(
        "ferry.yaml",
        "  keepWeekly: 4\n",
        &format!("  keepWeekly: 4\n  recipients: [{recipient}]\n  retention: 30d\n"),
    );
    let run = demo.run(&["backup", "create", "staging"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`backup.retention` needs an S3 store with Object Lock; [PROJECT]/.ferry/backups/demo/staging is a directory"),
        "{}",
        run.stderr
    );
    assert!(!demo.file(".ferry").exists());
}

#[test]
fn an_unknown_backup_key_is_an_error() {
    let demo = Demo::new();
    demo.edit(
        "ferry.yaml",
        "  keepWeekly: 4\n",
        "  keepWeekly: 4\n  retentionMode: governance\n",
    );
    let run = demo.run(&["backup", "list", "staging"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("retentionMode"), "{}", run.stderr);
}

#[test]
fn verify_of_an_empty_store_fails_and_list_says_so() {
    let demo = Demo::new();
    let list = demo.run(&["backup", "list", "staging"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        list.stderr
            .contains("note: no backups of staging in [PROJECT]/.ferry/backups/demo/staging"),
        "{}",
        list.stderr
    );
    let verify = demo.run(&["backup", "verify", "staging"]);
    assert_eq!(verify.code, 1, "{}", verify.stderr);
    assert!(
        verify.stderr.contains("error: no backups of staging in"),
        "{}",
        verify.stderr
    );
}

#[test]
fn list_json_is_one_document() {
    let demo = Demo::new();
    let run = demo.run(&["backup", "list", "staging", "--output", "json"]);
    assert_snapshot!(run.snapshot(), @r#"
    exit code: 0
    ----- stdout -----
    {"environment":"staging","store":"[PROJECT]/.ferry/backups/demo/staging","backups":[]}
    ----- stderr -----
    "#);
}
