//! CLI tests: the `ferry` binary run hermetically (cleared environment, temporary HOME, a
//! copy of the demo project), with exit code, stdout and stderr snapshotted.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod backup;
mod edges;
mod ignored;
mod lint;
mod plan;
mod render;
mod support;
