//! Acceptance tests: real components on 127.0.0.1 (a Kubernetes control plane with kwok nodes,
//! an OCI registry, an S3 server), started by `tests/cluster/up` (`scripts/test` does it).
//!
//! One namespace per test ([`support::TestNamespace`]). Without the stack every test fails with
//! the command that starts it; none is skipped. Modules:
//!
//! - `apply`: `ferry provision`, `apply`, `diff` and `status` (issue 4): idempotent provision,
//!   waves, pruning, CRDs, RBAC refusals, diff exit codes.
//! - `backup`: `ferry backup` (issue 11) to the directory store and S3: encryption, shared
//!   image blobs, verify and tamper detection, age/zstd/tar interoperability, prune.
//! - `cluster`: the test cluster itself behaves like a real one (rollouts, readiness stages,
//!   Pod Security admission, RBAC).
//! - `edges`: exit codes and edges (issue 10): a missing namespace, a closed stdout.
//! - `image`: `ferry image build|push` (issue 6) against skopeo, umoci and real registries
//!   (anonymous, htpasswd and token auth).
//! - `registry`: the OCI registry accepts and serves blobs and manifests.
//! - `release`: the building blocks of `ferry release` (issue 5): rollout watch, availability
//!   proof, release records, the lease lock, HTTP checks.
//! - `restore_images`: a backup's images pushed back to a registry that lost them, from the
//!   encrypted store, and pulled by digest; a blob in neither place is `Missing`.
//! - `rollback`: the way back needs only the cluster (issue 10): rollback and crash recovery
//!   with a broken template and no secrets, from bare files or flags.
//! - `s3`: the S3 server stores objects and checks SigV4 signatures.
//! - `secrets`: no command, error or log line shows a secret value (issue 10).
//! - `throttle`: throttling never fails an apply: `ferry apply` through a proxy that answers
//!   429 Too Many Requests with `Retry-After` (as API Priority and Fairness does).

mod apply;
mod backup;
mod cluster;
mod edges;
mod image;
mod plan;
mod registry;
mod release;
mod release_cmd;
mod restore_images;
mod rollback;
mod s3;
mod secrets;
mod support;
mod throttle;
