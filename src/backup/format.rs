//! The backup archive, pure: a tar of plain JSON files (`objects/<group>/<kind>/<name>.json`, then `manifest.json` and `manifest.mac.json`), compressed with zstd, then
//! encrypted with age to every recipient. Image blobs are sealed one by one with age (not
//! compressed: layers already are).
//!
//! # Guarantees
//! - `manifest.json` lists every other entry in order with its sha256 and size; it is
//!   authenticated by an HMAC-SHA256 under a random 32-byte key drawn for this backup, and
//!   both key and MAC live inside the encrypted payload (`manifest.mac.json`). Someone who
//!   can write to the store but holds no identity can neither read the key nor change a byte
//!   of the payload (age's STREAM AEAD), so [`open`] detects any changed, missing, added or
//!   reordered entry and names it.
//! - A wrong identity is [`Error::NoMatchingIdentity`], never a parse failure.
//!
//! # Caveats
//! The recipients are public, so someone with only them could fabricate a whole new,
//! self-consistent backup; what binds an archive to its store is the plaintext index's sha256
//! and the backup id inside the manifest (`open` checks it).
//!
//! Never touches the network or a cluster.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::keys::{Identities, Recipients};

/// The format's name and version, in every manifest.
pub const FORMAT: &str = "ferry.backup/v1";
/// The manifest's path in the archive.
pub const MANIFEST: &str = "manifest.json";
/// The MAC's path in the archive (the last entry).
pub const MANIFEST_MAC: &str = "manifest.mac.json";
/// zstd level: fast, and JSON compresses well at it.
const ZSTD_LEVEL: i32 = 3;

type HmacSha256 = Hmac<Sha256>;

/// Errors of sealing and opening archives and blobs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// age refused to encrypt (e.g. no recipients).
    #[error("failed to encrypt the backup")]
    Encrypt(#[source] age::EncryptError),
    /// None of the identities matches the archive's recipients.
    #[error("none of the identities can decrypt {what}: it was encrypted to other recipients")]
    NoMatchingIdentity {
        /// The archive or blob.
        what: String,
    },
    /// The file is not an age file, or its header is damaged.
    #[error("{what} is not a readable age file")]
    NotAge {
        /// The archive or blob.
        what: String,
        /// age's reason.
        #[source]
        source: age::DecryptError,
    },
    /// The payload failed authentication or decompression while reading.
    #[error("{what} is damaged: its encrypted payload failed authentication or decompression")]
    Damaged {
        /// The archive or blob.
        what: String,
        /// The reading error.
        #[source]
        source: std::io::Error,
    },
    /// Writing to memory failed (tar or zstd).
    #[error("failed to build the archive")]
    Build(#[source] std::io::Error),
    /// An object could not be encoded as JSON.
    #[error("failed to encode {path} as JSON")]
    Encode {
        /// The entry.
        path: String,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
}

/// One file of the archive, as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryDigest {
    /// Path in the tar.
    pub path: String,
    /// Hex sha256 of the content.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// Where the backup was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// The API server URL.
    pub server: String,
    /// The kubeconfig context.
    pub context: String,
    /// The uid of the `kube-system` namespace (stable for a cluster's life), when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The server's version.
    pub version: String,
}

/// One blob of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    /// `sha256:<hex>` of the plaintext (the OCI digest).
    pub digest: String,
    /// Plaintext bytes.
    pub size: u64,
    /// The OCI media type.
    pub media_type: String,
}

/// An image the workloads run, with the blobs stored beside the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference as the pod spec has it.
    pub reference: String,
    /// `host[:port]/repository`.
    pub repository: String,
    /// The manifest, config and layers (the manifest first).
    pub blobs: Vec<BlobRef>,
}

/// What a backup is and holds: its id and origin, and a digest of every entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The backup's id (also its name in the store).
    pub id: String,
    /// `ferry <version>`.
    pub tool: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The application.
    pub app: String,
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The cluster.
    pub cluster: ClusterIdentity,
    /// Every entry before the manifest, in archive order.
    pub entries: Vec<EntryDigest>,
    /// The images, whose blobs sit beside the archive.
    pub images: Vec<ImageRecord>,
}

/// The authenticator: `manifest.mac.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestMac {
    algorithm: String,
    key: String,
    mac: String,
}

/// What the archive describes, before sealing.
#[derive(Debug, Clone)]
pub struct Contents {
    /// Id, origin and time ([`Manifest::entries`] is filled by [`seal`]).
    pub manifest: Manifest,
    /// `(path, JSON bytes)` in archive order, without manifest files.
    pub entries: Vec<(String, Vec<u8>)>,
}

/// The path of an object's entry: `objects/<group or core>/<Kind>/<name>.json`.
pub fn object_path(api_version: &str, kind: &str, name: &str) -> String {
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("core");
    format!("objects/{group}/{kind}/{name}.json")
}

/// Pretty JSON of `value`, the form every entry is stored in.
///
/// # Errors
/// [`Error::Encode`].
pub fn json_entry<T: Serialize>(path: &str, value: &T) -> Result<(String, Vec<u8>), Error> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Encode {
        path: path.to_string(),
        source,
    })?;
    bytes.push(b'\n');
    Ok((path.to_string(), bytes))
}

/// Hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A sealed archive: the bytes to store and the manifest it carries.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// age(zstd(tar)).
    pub bytes: Vec<u8>,
    /// The manifest, with its entries filled.
    pub manifest: Manifest,
}

/// Builds the tar (entries, then the manifest and its MAC), compresses and encrypts it.
///
/// # Errors
/// [`Error::Encrypt`], [`Error::Build`], [`Error::Encode`].
pub fn seal(contents: Contents, recipients: &Recipients) -> Result<Sealed, Error> {
    let mut key = [0u8; 32];
    super::random_bytes(&mut key);
    seal_with_key(contents, recipients, &key)
}

fn seal_with_key(
    contents: Contents,
    recipients: &Recipients,
    key: &[u8; 32],
) -> Result<Sealed, Error> {
    let mut manifest = contents.manifest;
    manifest.entries = contents
        .entries
        .iter()
        .map(|(path, bytes)| EntryDigest {
            path: path.clone(),
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        })
        .collect();
    let (_, manifest_bytes) = json_entry(MANIFEST, &manifest)?;
    let mac = ManifestMac {
        algorithm: "HMAC-SHA256".to_string(),
        key: hex::encode(key),
        mac: hex::encode(mac_of(key, &manifest_bytes)),
    };
    let (_, mac_bytes) = json_entry(MANIFEST_MAC, &mac)?;

    let encryptor = recipients.encryptor().map_err(Error::Encrypt)?;
    let mut out = Vec::new();
    let sealed = encryptor.wrap_output(&mut out).map_err(Error::Build)?;
    let zstd = zstd::Encoder::new(sealed, ZSTD_LEVEL).map_err(Error::Build)?;
    let mut tar = tar::Builder::new(zstd);
    let all = contents
        .entries
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .chain([
            (MANIFEST, manifest_bytes.as_slice()),
            (MANIFEST_MAC, mac_bytes.as_slice()),
        ]);
    for (path, bytes) in all {
        append(&mut tar, path, bytes).map_err(Error::Build)?;
    }
    let zstd = tar.into_inner().map_err(Error::Build)?;
    let sealed = zstd.finish().map_err(Error::Build)?;
    sealed.finish().map_err(Error::Build)?;
    Ok(Sealed {
        bytes: out,
        manifest,
    })
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes)
}

fn mac_of(key: &[u8], bytes: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(bytes);
    mac.finalize().into_bytes().to_vec()
}

/// One problem found while opening an archive; `entry` names the file concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "problem")]
pub enum Problem {
    /// The content does not match its manifest digest.
    Changed {
        /// The entry.
        entry: String,
    },
    /// Listed in the manifest, absent from the archive.
    Missing {
        /// The entry.
        entry: String,
    },
    /// In the archive, not in the manifest.
    Unexpected {
        /// The entry.
        entry: String,
    },
    /// Present and intact but not where the manifest puts it.
    Reordered {
        /// The entry.
        entry: String,
    },
    /// The manifest or its MAC is missing, unreadable or does not authenticate.
    Manifest {
        /// `manifest.json` or `manifest.mac.json`.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// An entry is not valid JSON.
    NotJson {
        /// The entry.
        entry: String,
    },
    /// A stored file does not match the checksum recorded for it.
    Checksum {
        /// The file in the store.
        entry: String,
    },
    /// An encrypted file failed to decrypt: its payload was altered or truncated.
    Damaged {
        /// The file in the store.
        entry: String,
    },
}

impl Problem {
    /// The file concerned.
    pub fn entry(&self) -> &str {
        match self {
            Problem::Changed { entry }
            | Problem::Missing { entry }
            | Problem::Unexpected { entry }
            | Problem::Reordered { entry }
            | Problem::Manifest { entry, .. }
            | Problem::NotJson { entry }
            | Problem::Checksum { entry }
            | Problem::Damaged { entry } => entry,
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Problem::Changed { entry } => format!("{entry}: content does not match the manifest"),
            Problem::Missing { entry } => format!("{entry}: listed in the manifest but missing"),
            Problem::Unexpected { entry } => format!("{entry}: not listed in the manifest"),
            Problem::Reordered { entry } => {
                format!("{entry}: not at the position the manifest gives")
            }
            Problem::Manifest { entry, reason } => format!("{entry}: {reason}"),
            Problem::NotJson { entry } => format!("{entry}: not valid JSON"),
            Problem::Checksum { entry } => {
                format!("{entry}: does not match the checksum recorded in the index")
            }
            Problem::Damaged { entry } => {
                format!("{entry}: failed to decrypt (altered or truncated)")
            }
        }
    }
}

/// An opened archive.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The manifest, when it authenticated (else `None` and a [`Problem::Manifest`]).
    pub manifest: Option<Manifest>,
    /// Every entry in archive order (manifest files excluded).
    pub entries: Vec<(String, Vec<u8>)>,
    /// What is wrong; empty when the archive is intact.
    pub problems: Vec<Problem>,
}

impl Opened {
    /// The entry at `path`.
    pub fn entry(&self, path: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.as_slice())
    }
}

/// Decrypts, decompresses and checks an archive against its authenticated manifest.
///
/// `what` names the archive in errors. A payload that fails age's authentication is
/// [`Error::Damaged`]; a structurally intact payload whose entries disagree with the manifest
/// is `Ok` with [`Opened::problems`].
///
/// # Errors
/// [`Error::NoMatchingIdentity`], [`Error::NotAge`], [`Error::Damaged`].
pub fn open(bytes: &[u8], identities: &Identities, what: &str) -> Result<Opened, Error> {
    let reader = decrypt(bytes, identities, what)?;
    let damaged = |source| Error::Damaged {
        what: what.to_string(),
        source,
    };
    let zstd = zstd::Decoder::new(reader).map_err(damaged)?;
    let mut archive = tar::Archive::new(zstd);
    let mut found: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(damaged)?;
        found.push((path, content));
    }
    Ok(check(found))
}

fn check(found: Vec<(String, Vec<u8>)>) -> Opened {
    let mut problems = Vec::new();
    let mut manifest_bytes = None;
    let mut mac_bytes = None;
    let mut entries = Vec::new();
    for (path, content) in found {
        match path.as_str() {
            MANIFEST if manifest_bytes.is_none() => manifest_bytes = Some(content),
            MANIFEST_MAC if mac_bytes.is_none() => mac_bytes = Some(content),
            MANIFEST | MANIFEST_MAC => problems.push(Problem::Unexpected { entry: path }),
            _ => entries.push((path, content)),
        }
    }
    let manifest = authenticate(manifest_bytes.as_deref(), mac_bytes.as_deref());
    let manifest = match manifest {
        Ok(m) => Some(m),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    if let Some(manifest) = &manifest {
        compare(&manifest.entries, &entries, &mut problems);
    }
    for (path, content) in &entries {
        if path.ends_with(".json") && serde_json::from_slice::<serde_json::Value>(content).is_err()
        {
            problems.push(Problem::NotJson {
                entry: path.clone(),
            });
        }
    }
    Opened {
        manifest,
        entries,
        problems,
    }
}

fn authenticate(manifest: Option<&[u8]>, mac: Option<&[u8]>) -> Result<Manifest, Problem> {
    let bad = |entry: &str, reason: &str| Problem::Manifest {
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let manifest = manifest.ok_or_else(|| bad(MANIFEST, "missing"))?;
    let mac = mac.ok_or_else(|| bad(MANIFEST_MAC, "missing"))?;
    let mac: ManifestMac =
        serde_json::from_slice(mac).map_err(|_| bad(MANIFEST_MAC, "not valid JSON"))?;
    if mac.algorithm != "HMAC-SHA256" {
        return Err(bad(MANIFEST_MAC, "unknown MAC algorithm"));
    }
    let key = hex::decode(&mac.key).map_err(|_| bad(MANIFEST_MAC, "key is not hex"))?;
    let tag = hex::decode(&mac.mac).map_err(|_| bad(MANIFEST_MAC, "MAC is not hex"))?;
    let mut verifier =
        <HmacSha256 as Mac>::new_from_slice(&key).map_err(|_| bad(MANIFEST_MAC, "bad key"))?;
    verifier.update(manifest);
    verifier
        .verify_slice(&tag)
        .map_err(|_| bad(MANIFEST, "does not match its MAC (altered)"))?;
    let manifest: Manifest =
        serde_json::from_slice(manifest).map_err(|_| bad(MANIFEST, "not a ferry manifest"))?;
    if manifest.format != FORMAT {
        return Err(bad(MANIFEST, "unknown format version"));
    }
    Ok(manifest)
}

fn compare(listed: &[EntryDigest], found: &[(String, Vec<u8>)], problems: &mut Vec<Problem>) {
    let by_path: BTreeMap<&str, (usize, &[u8])> = found
        .iter()
        .enumerate()
        .map(|(i, (p, b))| (p.as_str(), (i, b.as_slice())))
        .collect();
    let listed_paths: BTreeMap<&str, usize> = listed
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_str(), i))
        .collect();
    // Positions among entries present in both, so one missing entry does not make every
    // later one look reordered.
    let common_found: Vec<&str> = found
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| listed_paths.contains_key(p))
        .collect();
    let common_listed: Vec<&str> = listed
        .iter()
        .map(|e| e.path.as_str())
        .filter(|p| by_path.contains_key(p))
        .collect();
    for entry in listed {
        match by_path.get(entry.path.as_str()) {
            None => problems.push(Problem::Missing {
                entry: entry.path.clone(),
            }),
            Some((_, bytes)) => {
                if sha256_hex(bytes) != entry.sha256 || bytes.len() as u64 != entry.size {
                    problems.push(Problem::Changed {
                        entry: entry.path.clone(),
                    });
                }
            }
        }
    }
    for (listed, found) in common_listed.iter().zip(&common_found) {
        if listed != found {
            problems.push(Problem::Reordered {
                entry: (*found).to_string(),
            });
        }
    }
    for (path, _) in found {
        if !listed_paths.contains_key(path.as_str()) {
            problems.push(Problem::Unexpected {
                entry: path.clone(),
            });
        }
    }
    // Duplicates: a second copy of a listed path is an added entry.
    let mut seen = std::collections::BTreeSet::new();
    for (path, _) in found {
        if !seen.insert(path.as_str()) && listed_paths.contains_key(path.as_str()) {
            problems.push(Problem::Unexpected {
                entry: path.clone(),
            });
        }
    }
}

/// Encrypts one image blob to the recipients.
///
/// # Errors
/// [`Error::Encrypt`], [`Error::Build`].
pub fn seal_blob(bytes: &[u8], recipients: &Recipients) -> Result<Vec<u8>, Error> {
    let encryptor = recipients.encryptor().map_err(Error::Encrypt)?;
    let mut out = Vec::with_capacity(bytes.len() + 1024);
    let mut w = encryptor.wrap_output(&mut out).map_err(Error::Build)?;
    w.write_all(bytes).map_err(Error::Build)?;
    w.finish().map_err(Error::Build)?;
    Ok(out)
}

/// Decrypts one image blob.
///
/// # Errors
/// [`Error::NoMatchingIdentity`], [`Error::NotAge`], [`Error::Damaged`].
pub fn open_blob(bytes: &[u8], identities: &Identities, what: &str) -> Result<Vec<u8>, Error> {
    let mut reader = decrypt(bytes, identities, what)?;
    let mut out = Vec::new();
    reader
        .read_to_end(&mut out)
        .map_err(|source| Error::Damaged {
            what: what.to_string(),
            source,
        })?;
    Ok(out)
}

fn decrypt<'a>(
    bytes: &'a [u8],
    identities: &Identities,
    what: &str,
) -> Result<age::stream::StreamReader<&'a [u8]>, Error> {
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(|source| Error::NotAge {
        what: what.to_string(),
        source,
    })?;
    decryptor
        .decrypt(identities.iter())
        .map_err(|source| match source {
            age::DecryptError::NoMatchingKeys => Error::NoMatchingIdentity {
                what: what.to_string(),
            },
            source => Error::NotAge {
                what: what.to_string(),
                source,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::keys::{Identities, Recipients, generate};

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.to_string(),
            id: "20260101T000000Z-00000000".to_string(),
            tool: "ferry test".to_string(),
            created_at: "2026-01-01T00:00:00Z".to_string(),
            app: "demo".to_string(),
            environment: "staging".to_string(),
            namespace: "demo-staging".to_string(),
            cluster: ClusterIdentity::default(),
            entries: Vec::new(),
            images: Vec::new(),
        }
    }

    fn contents() -> Contents {
        let entries = ["a", "b", "c"]
            .iter()
            .map(|n| {
                json_entry(
                    &object_path("v1", "ConfigMap", n),
                    &serde_json::json!({"kind": "ConfigMap", "metadata": {"name": n}}),
                )
                .unwrap()
            })
            .collect();
        Contents {
            manifest: manifest(),
            entries,
        }
    }

    fn keys() -> (Identities, Recipients) {
        let key = generate();
        let identities = Identities::parse(key.secret_text(), "test").unwrap();
        let recipients = Recipients::parse(std::slice::from_ref(&key.recipient)).unwrap();
        (identities, recipients)
    }

    /// Plaintext tar of an opened archive with `edit` applied, re-sealed: what a holder of an
    /// identity (stronger than the threat model's attacker) could produce.
    fn tampered(
        identities: &Identities,
        recipients: &Recipients,
        sealed: &[u8],
        edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
    ) -> Vec<u8> {
        let reader = decrypt(sealed, identities, "t").unwrap();
        let mut archive = tar::Archive::new(zstd::Decoder::new(reader).unwrap());
        let mut all: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                (p, b)
            })
            .collect();
        edit(&mut all);
        let mut out = Vec::new();
        let w = recipients
            .encryptor()
            .unwrap()
            .wrap_output(&mut out)
            .unwrap();
        let mut tar = tar::Builder::new(zstd::Encoder::new(w, 3).unwrap());
        for (p, b) in &all {
            append(&mut tar, p, b).unwrap();
        }
        tar.into_inner()
            .unwrap()
            .finish()
            .unwrap()
            .finish()
            .unwrap();
        out
    }

    #[test]
    fn a_sealed_archive_opens_intact_with_its_manifest() {
        let (ids, rcp) = keys();
        let sealed = seal(contents(), &rcp).unwrap();
        let opened = open(&sealed.bytes, &ids, "archive").unwrap();
        assert_eq!(opened.problems, vec![]);
        let m = opened.manifest.unwrap();
        assert_eq!(m.entries.len(), 3);
        assert_eq!(m.entries[0].path, "objects/core/ConfigMap/a.json");
        assert_eq!(opened.entries.len(), 3);
    }

    #[test]
    fn group_paths_use_core_for_the_core_group() {
        assert_eq!(
            object_path("apps/v1", "Deployment", "web"),
            "objects/apps/Deployment/web.json"
        );
        assert_eq!(
            object_path("v1", "Secret", "s"),
            "objects/core/Secret/s.json"
        );
    }

    #[test]
    fn the_payload_holds_no_plaintext() {
        let (_, rcp) = keys();
        let mut c = contents();
        c.entries.push(
            json_entry(
                "objects/core/Secret/s.json",
                &serde_json::json!({"data": "aHVudGVyMg=="}),
            )
            .unwrap(),
        );
        let sealed = seal(c, &rcp).unwrap();
        let text = String::from_utf8_lossy(&sealed.bytes);
        assert!(!text.contains("aHVudGVyMg=="));
        assert!(!text.contains("ConfigMap"));
        assert!(text.starts_with("age-encryption.org/v1"));
    }

    #[test]
    fn a_changed_entry_is_named() {
        let (ids, rcp) = keys();
        let sealed = seal(contents(), &rcp).unwrap();
        let bad = tampered(&ids, &rcp, &sealed.bytes, |all| all[1].1[5] ^= 1);
        let opened = open(&bad, &ids, "archive").unwrap();
        assert!(
            opened.problems.contains(&Problem::Changed {
                entry: "objects/core/ConfigMap/b.json".into()
            }),
            "{:?}",
            opened.problems
        );
    }

    #[test]
    fn a_missing_entry_is_named() {
        let (ids, rcp) = keys();
        let sealed = seal(contents(), &rcp).unwrap();
        let bad = tampered(&ids, &rcp, &sealed.bytes, |all| {
            all.remove(0);
        });
        let opened = open(&bad, &ids, "archive").unwrap();
        assert_eq!(
            opened.problems,
            vec![Problem::Missing {
                entry: "objects/core/ConfigMap/a.json".into()
            }]
        );
    }

    #[test]
    fn an_added_entry_is_named() {
        let (ids, rcp) = keys();
        let sealed = seal(contents(), &rcp).unwrap();
        let bad = tampered(&ids, &rcp, &sealed.bytes, |all| {
            all.push(("objects/core/Secret/extra.json".into(), b"{}".to_vec()));
        });
        let opened = open(&bad, &ids, "archive").unwrap();
        assert_eq!(
            opened.problems,
            vec![Problem::Unexpected {
                entry: "objects/core/Secret/extra.json".into()
            }]
        );
    }

    #[test]
    fn reordered_entries_are_named() {
        let (ids, rcp) = keys();
        let sealed = seal(contents(), &rcp).unwrap();
        let bad = tampered(&ids, &rcp, &sealed.bytes, |all| all.swap(0, 2));
        let opened = open(&bad, &ids, "archive").unwrap();
        assert!(
            opened
                .problems
                .iter()
                .all(|p| matches!(p, Problem::Reordered { .. })),
            "{:?}",
            opened.problems
        );
        assert_eq!(opened.problems.len(), 2);
    }

    #[test]
    fn a_rewritten_manifest_fails_its_mac() {
        let (ids, rcp) = keys();
        let sealed = seal(contents(), &rcp).unwrap();
        let bad = tampered(&ids, &rcp, &sealed.bytes, |all| {
            let m = all.iter_mut().find(|(p, _)| p == MANIFEST).unwrap();
            let text = String::from_utf8(m.1.clone())
                .unwrap()
                .replace("staging", "stagin2");
            m.1 = text.into_bytes();
        });
        let opened = open(&bad, &ids, "archive").unwrap();
        assert!(opened.manifest.is_none());
        assert_eq!(opened.problems[0].entry(), MANIFEST);
    }

    #[test]
    fn a_flipped_ciphertext_byte_is_damage_not_garbage() {
        let (ids, rcp) = keys();
        let mut sealed = seal(contents(), &rcp).unwrap().bytes;
        let n = sealed.len();
        sealed[n - 20] ^= 0x40;
        let error = open(&sealed, &ids, "archive").unwrap_err();
        assert!(matches!(error, Error::Damaged { .. }), "{error:?}");
    }

    #[test]
    fn a_wrong_identity_is_a_clear_error() {
        let (_, rcp) = keys();
        let (other, _) = keys();
        let sealed = seal(contents(), &rcp).unwrap();
        let error = open(&sealed.bytes, &other, "archive").unwrap_err();
        assert!(
            matches!(error, Error::NoMatchingIdentity { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn every_recipient_can_open_it() {
        let a = generate();
        let b = generate();
        let rcp = Recipients::parse(&[a.recipient.clone(), b.recipient.clone()]).unwrap();
        let sealed = seal(contents(), &rcp).unwrap();
        for key in [a, b] {
            let ids = Identities::parse(key.secret_text(), "k").unwrap();
            assert!(open(&sealed.bytes, &ids, "a").unwrap().problems.is_empty());
        }
    }

    #[test]
    fn blobs_round_trip_and_refuse_other_identities() {
        let (ids, rcp) = keys();
        let (other, _) = keys();
        let sealed = seal_blob(b"layer bytes", &rcp).unwrap();
        assert_eq!(open_blob(&sealed, &ids, "blob").unwrap(), b"layer bytes");
        assert!(matches!(
            open_blob(&sealed, &other, "blob"),
            Err(Error::NoMatchingIdentity { .. })
        ));
    }
}
