//! The hermetic fixture: a temporary copy of the demo project and a `ferry` command with a
//! cleared environment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary copy of the repository's demo project.
pub struct Demo {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

/// What a run of ferry produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exit code, stdout and stderr as one text for snapshots.
    pub fn snapshot(&self) -> String {
        format!(
            "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Demo {
    /// Copies ferry.yaml, templates/ and environments/ from the repository root.
    pub fn new() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(root.join("ferry.yaml"), dir.path().join("ferry.yaml")).unwrap();
        for sub in ["templates", "environments"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            for entry in std::fs::read_dir(root.join(sub)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
            }
        }
        Demo {
            dir,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// The project root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the project.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Overwrites (or creates) a file of the project.
    pub fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.file(relative), text).unwrap();
    }

    /// Replaces `from` with `to` in a file of the project; panics if `from` is absent.
    pub fn edit(&self, relative: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.file(relative)).unwrap();
        assert!(text.contains(from), "{relative} does not contain {from:?}");
        self.write(relative, &text.replacen(from, to, 1));
    }

    /// `ferry` with a cleared environment, run in the project root.
    pub fn ferry(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.env_clear()
            .env("HOME", self.home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `ferry args…` and captures the result, with the temporary path filtered out.
    pub fn run(&self, args: &[&str]) -> Run {
        run(self.ferry().args(args), self.dir.path())
    }
}

/// Runs `cmd`, replacing `root` in its output with `[PROJECT]`.
pub fn run(cmd: &mut Command, root: &Path) -> Run {
    let output = cmd.output().unwrap();
    let filter = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).replace(&root.display().to_string(), "[PROJECT]")
    };
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: filter(&output.stdout),
        stderr: filter(&output.stderr),
    }
}
