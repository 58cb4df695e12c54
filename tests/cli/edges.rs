//! Exit codes and edges (issue 10): a closed stdout keeps the command's own exit code, odd
//! file names and malformed YAML never panic, and a removed flag is clap's usage error.

use std::process::{Command, Stdio};

use crate::support::Demo;

/// Runs `cmd` with its stdout closed before ferry writes a byte (like `| head -0`), and
/// returns the exit code and stderr.
fn with_closed_stdout(cmd: &mut Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Issue 10: `ferry diff | head -1` exited 0 whatever diff found. The same path, without a
/// cluster: a lint that fails (exit 2) while its JSON goes into a closed pipe.
#[test]
fn issue_10_a_closed_stdout_keeps_the_exit_code() {
    let demo = Demo::new();
    demo.edit(
        "templates/deployment.yaml.hbs",
        "runAsUser: 65532",
        "runAsUser: 0",
    );
    let (code, stderr) =
        with_closed_stdout(demo.ferry().args(["lint", "staging", "--output", "json"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("failed to write"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A closed stdout is not an error: the command ends quietly with its own code (0 here).
#[test]
fn issue_10_a_closed_stdout_is_quiet() {
    let demo = Demo::new();
    let (code, stderr) = with_closed_stdout(demo.ferry().args(["render", "staging"]));
    assert_eq!(code, Some(0), "{stderr}");
    // The same lint warning as with an open stdout, and nothing more.
    assert_eq!(stderr, demo.run(&["render", "staging"]).stderr);
}

/// Issue 10: `ferry render -o DIR` panicked on a non-ASCII file name already in DIR. Files of
/// an earlier render (`NNN-….yaml`) are replaced; every other name is left alone.
#[test]
fn issue_10_render_into_a_directory_with_odd_file_names() {
    // (name, is it an earlier render's file?)
    let table: &[(&str, bool)] = &[
        ("ééé.yaml", false),
        ("日本語.yaml", false),
        ("0é1-x.yaml", false),
        ("00é-x.yaml", false),
        ("é01-x.yaml", false),
        ("001é.yaml", false),
        ("001", false),
        ("001-", false),
        ("01-x.yaml", false),
        ("abc-x.yaml", false),
        ("001-x.yml", false),
        (".yaml", false),
        ("-", false),
        (" 001-x.yaml", false),
        ("001-ü.yaml", true),
        ("999-.yaml", true),
        ("042-configmap-old.yaml", true),
    ];
    let demo = Demo::new();
    let out = demo.file("out");
    std::fs::create_dir(&out).unwrap();
    for (name, _) in table {
        std::fs::write(out.join(name), "kept").unwrap();
    }
    #[cfg(unix)]
    let not_utf8 = {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"00\xff-\xfe.yaml").to_owned();
        std::fs::write(out.join(&name), "kept").unwrap();
        name
    };
    let run = demo.run(&["render", "staging", "-o", "out"]);
    assert_eq!(run.code, 0, "{}", run.snapshot());
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for (name, earlier) in table {
        let path = out.join(name);
        if *earlier {
            assert!(!path.exists(), "{name:?} of an earlier render was kept");
        } else {
            assert_eq!(
                std::fs::read_to_string(&path).ok().as_deref(),
                Some("kept"),
                "{name:?} was touched"
            );
        }
    }
    #[cfg(unix)]
    assert!(
        out.join(not_utf8).exists(),
        "the non-UTF-8 name was removed"
    );
}

/// Object names nobody validated yet (a server would refuse them) still give one file inside
/// DIR each: a `/` in a name must not write outside it.
#[test]
fn render_output_file_names_stay_inside_the_directory() {
    let demo = Demo::new();
    demo.write(
        "templates/odd.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ../../escaped\ndata: {a: b}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"ünï/cödé\\u0000\"\ndata: {a: b}\n",
    );
    let run = demo.run(&["render", "staging", "-o", "out/deep", "--no-lint"]);
    assert_eq!(run.code, 0, "{}", run.snapshot());
    let written: Vec<String> = std::fs::read_dir(demo.file("out/deep"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written.len(), 10, "{written:?}");
    assert!(
        written
            .iter()
            .any(|n| n.ends_with("-configmap-demo-staging-.._.._escaped.yaml")),
        "{written:?}"
    );
    assert!(
        written
            .iter()
            .any(|n| n.ends_with("-configmap-demo-staging-ünï_cödé_.yaml")),
        "{written:?}"
    );
    let outside: Vec<_> = std::fs::read_dir(demo.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("escaped"))
        .collect();
    assert!(outside.is_empty(), "written outside out/deep: {outside:?}");
    assert!(!demo.file("escaped.yaml").exists());
}

/// Malformed YAML in every file a user writes: each is refused with exit 2 (or accepted),
/// never a panic or a crash.
#[test]
fn issue_10_malformed_yaml_never_panics() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_map = "a: {".repeat(50_000);
    let laughs = {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        text
    };
    let deep_block = format!("{}x\n", "- ".repeat(100_000));
    let cases: &[(&str, &[u8])] = &[
        ("tab indentation", b"a:\n\tb: 1\n"),
        ("unterminated quote", b"a: \"open\n"),
        ("unterminated flow", b"a: [1, 2\n"),
        ("lone colon", b":\n"),
        ("undefined alias", b"a: *nope\n"),
        ("self alias", b"a: &x [*x]\n"),
        ("duplicate anchors", b"a: &x 1\nb: &x 2\nc: *x\n"),
        ("complex key", b"? [a, b]\n: c\n"),
        ("directive only", b"%YAML 1.2\n"),
        ("bad directive", b"%YAML 9.9\n---\na: 1\n"),
        ("bom in the middle", "a: 1\n\u{feff}b: 2\n".as_bytes()),
        ("nul byte", b"a: \x00\n"),
        ("not utf-8", b"a: \xff\xfe\n"),
        ("invalid escape", b"a: \"\\q\"\n"),
        ("huge integer", b"a: 123456789012345678901234567890\n"),
        ("infinity", b"a: .inf\n"),
        ("document end", b"a: 1\n...\n...\n"),
        ("tag", b"a: !!binary 0\n"),
        ("unknown tag", b"a: !<tag:x> [1]\n"),
        ("only a scalar", b"just text\n"),
        ("only a list", b"- 1\n- 2\n"),
        ("emoji keys", "🚀: {ü: ß}\n".as_bytes()),
        ("deep nesting", deep.as_bytes()),
        ("deep block nesting", deep_block.as_bytes()),
        ("deep unclosed", deep_map.as_bytes()),
        ("billion laughs", laughs.as_bytes()),
    ];
    // (file, what comes before the case: nothing, or a key whose value it becomes)
    let files: &[(&str, &str)] = &[
        ("ferry.yaml", ""),
        ("ferry.yaml", "app: demo\nvalues:\n"),
        ("environments/staging.yaml", ""),
        (
            "environments/staging.yaml",
            "context: ferry-local\nnamespace: demo-staging\nvalues:\n",
        ),
        ("environments/staging.local-secrets.yaml", ""),
        ("templates/extra.yaml.hbs", ""),
        (
            "templates/extra.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\ndata:\n",
        ),
    ];
    for (file, before) in files {
        for (name, text) in cases {
            let demo = Demo::new();
            let mut content = before.as_bytes().to_vec();
            if before.is_empty() {
                content.extend_from_slice(text);
            } else {
                for line in text.split(|b| *b == b'\n') {
                    content.extend_from_slice(b"  ");
                    content.extend_from_slice(line);
                    content.push(b'\n');
                }
            }
            std::fs::write(demo.file(file), content).unwrap();
            let run = demo.run(&["render", "staging"]);
            let what = format!("{name} in {file} after {before:?}");
            assert!(
                !run.stderr.contains("panicked") && !run.stderr.contains("overflow"),
                "{what}: {}",
                run.stderr
            );
            assert!(!looks_like_debug(&run.stderr), "{what}: {}", run.stderr);
            assert!(
                run.code == 0 || run.code == 2,
                "{what}: exit {}: {}",
                run.code,
                run.stderr
            );
            if run.code == 2 {
                assert!(run.stderr.starts_with("error: "), "{what}: {}", run.stderr);
            }
        }
    }
}

/// Whether `text` holds a Rust `Debug` struct (`Depth { depth: 65 }`) or option (`Some(`).
fn looks_like_debug(text: &str) -> bool {
    if text.contains("Some(") || text.contains("None)") {
        return true;
    }
    text.split(" { ")
        .skip(1)
        .zip(text.split(" { "))
        .any(|(after, before)| {
            let name = before.rsplit(' ').next().unwrap_or("");
            let field = after.split(':').next().unwrap_or("");
            name.starts_with(|c: char| c.is_ascii_uppercase())
                && !field.is_empty()
                && field.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
}

/// Issue 10: `--yes` was parsed and never read; nothing asks for confirmation, so it is gone.
#[test]
fn issue_10_yes_is_not_a_flag() {
    let demo = Demo::new();
    let run = demo.run(&["render", "staging", "--yes"]);
    assert_eq!(run.code, 2, "{}", run.snapshot());
    assert!(
        run.stderr.contains("unexpected argument '--yes'"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}
