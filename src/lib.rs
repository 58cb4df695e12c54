//! Ferry carries an application from source to production on Kubernetes.
//!
//! The modules follow the flow of `../shared/DESIGN.md`:
//!
//! - [`cli`]: clap definitions, one file per command; parse, one ops call, print.
//! - [`ops`]: one file per operation; an options struct in, an outcome out; no printing.
//! - [`project`]: `ferry.yaml` and `environments/`: types, loading, merging, validation.
//! - [`render`]: the Handlebars registry, its helpers and the ordered object bundle.
//! - [`object`]: a rendered Kubernetes object and the identity (kind, namespace, name) of one.
//! - [`redact`]: the secret values seen by this process and the scrubber all output passes through.
//! - [`plan`]: the dependency plan of a bundle: steps, implicit and declared dependencies.
//! - [`policy`]: hardening and zero-downtime rules as pure functions over objects.
//! - [`image`]: reproducible OCI images: layers, config, manifest, layout, SBOMs, I-rules.
//! - [`registry`]: the OCI distribution client (reqwest): auth, HEAD-skip, mount, push, pull.
//! - [`cluster`]: the kube client, discovery, server-side apply along the dependency plan, prune, diff, status.
//! - [`release`]: rollout watch, availability proof, release records, the lease lock, HTTP checks.
//! - [`backup`]: encrypted, self-verifying backups: the archive format (pure), the stores.
//! - [`ui`]: the printer (human and JSON), error rendering, logging.
//!
//! Pure modules (`project`, `render`, `redact`, `object`, `plan`, `policy`, `image`, and `backup`'s
//! `format`, `keys`, `normalize` and `index`) never touch the network or a cluster.

pub mod backup;
pub mod cli;
pub mod cluster;
pub mod image;
pub mod object;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod project;
pub mod redact;
pub mod registry;
pub mod release;
pub mod render;
pub mod ui;
