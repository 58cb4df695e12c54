//! Backups of an environment: encrypted, isolated, self-verifying.
//!
//! Pure (no network, no cluster; CI greps them): [`format`] (the archive: tar of JSON,
//! zstd, age, authenticated manifest), [`keys`] (age recipients and identities),
//! [`normalize`] (what is kept of a live object), [`index`] (the plaintext index beside each
//! archive, and which backups retention keeps).
//!
//! Adapters: [`capture`] reads the environment from its cluster; [`store`] writes and reads
//! the directory and S3 stores. `ops::backup` composes them.
//!
//! Store layout, every key written once:
//!
//! ```text
//! backups/<id>.tar.zst.age     age(zstd(tar of objects/…, manifest.json, manifest.mac.json))
//! backups/<id>.index.json      plaintext: id, time, counts, sizes and sha256 of every file
//! blobs/sha256/<hex>.age       an image blob (manifest, config or layer), age-encrypted
//! blobs/sha256/<hex>.json      its encrypted size and sha256
//! verified/<id>/<time>.json    a record of a passed `ferry backup verify`
//! ```

pub mod capture;
pub mod format;
pub mod index;
pub mod keys;
pub mod normalize;
pub mod remap;
pub mod store;

/// Progress of `backup create`, reported by the operation; the UI draws it.
pub trait Reporter: Send + Sync {
    /// The objects were read from the cluster.
    fn objects(&self, _count: usize) {}
    /// One image blob was stored (`uploaded` false when it already was).
    fn blob(&self, _digest: &str, _bytes: u64, _uploaded: bool) {}
    /// The archive was written.
    fn archive(&self, _bytes: u64) {}
}

/// A reporter that reports nothing.
#[derive(Debug, Default)]
pub struct NoopReporter;

impl Reporter for NoopReporter {}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// Only when the OS has no random source at all, where no key could be made either.
pub fn random_bytes(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::getrandom(buf).expect("the operating system's random source failed");
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    random_bytes(&mut buf);
    hex::encode(buf)
}
