//! The plaintext index written beside each archive, and retention, pure.
//!
//! The index holds no object content, only what `list` shows and what `verify` checks
//! without an identity: counts, sizes and the sha256 of every stored file of the backup.
//! Retention ([`select`]) decides which backups `prune` keeps.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The index's format name.
pub const INDEX_FORMAT: &str = "ferry.backup.index/v1";

/// The key of a backup's archive.
pub fn archive_key(id: &str) -> String {
    format!("backups/{id}.tar.zst.age")
}

/// The key of a backup's index.
pub fn index_key(id: &str) -> String {
    format!("backups/{id}.index.json")
}

/// The key of an encrypted image blob.
pub fn blob_key(digest: &str) -> String {
    format!("blobs/sha256/{}.age", digest.trim_start_matches("sha256:"))
}

/// The key of a blob's record.
pub fn blob_record_key(digest: &str) -> String {
    format!("blobs/sha256/{}.json", digest.trim_start_matches("sha256:"))
}

/// The prefix of a backup's verification records.
pub fn verified_prefix(id: &str) -> String {
    format!("verified/{id}/")
}

/// A stored file and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Its key.
    pub key: String,
    /// Bytes as stored.
    pub size: u64,
    /// Hex sha256 as stored (of the ciphertext).
    pub sha256: String,
}

/// One image blob of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexBlob {
    /// `sha256:<hex>` of the plaintext.
    pub digest: String,
    /// The encrypted file.
    pub file: StoredFile,
}

/// `backups/<id>.index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// [`INDEX_FORMAT`].
    pub format: String,
    /// The backup's id.
    pub id: String,
    /// When it was taken (RFC 3339, UTC).
    pub created_at: String,
    /// `ferry <version>`.
    pub tool: String,
    /// The application.
    pub app: String,
    /// The environment.
    pub environment: String,
    /// Objects in the archive.
    pub objects: usize,
    /// Images.
    pub images: usize,
    /// The archive.
    pub archive: StoredFile,
    /// The image blobs it references (shared with other backups).
    pub blobs: Vec<IndexBlob>,
    /// The recipients it was encrypted to (public keys).
    pub recipients: Vec<String>,
    /// The Object Lock retain-until date of its files (RFC 3339), when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<String>,
}

impl Index {
    /// Bytes of the archive and every blob it references.
    pub fn total_size(&self) -> u64 {
        self.archive.size + self.blobs.iter().map(|b| b.file.size).sum::<u64>()
    }
}

/// `blobs/sha256/<hex>.json`: the encrypted blob's size and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// `sha256:<hex>` of the plaintext.
    pub digest: String,
    /// The encrypted file.
    pub file: StoredFile,
}

/// How thoroughly a backup was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Every stored file matched its checksum (no identity).
    Checksums,
    /// Also decrypted and parsed, manifest authenticated (with an identity).
    Full,
}

/// `verified/<id>/<time>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedRecord {
    /// The backup.
    pub id: String,
    /// When.
    pub verified_at: String,
    /// How.
    pub level: Level,
    /// `ferry <version>`.
    pub tool: String,
}

/// A backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its id.
    pub id: String,
    /// Seconds since the epoch when it was taken.
    pub created: u64,
    /// True while its Object Lock retention has not expired (it cannot be deleted).
    pub locked: bool,
    /// True when a full verification passed.
    pub verified: bool,
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    /// The newest of one of the last `keepDaily` days with backups.
    Daily,
    /// The newest of one of the last `keepWeekly` weeks (Monday to Sunday, UTC).
    Weekly,
    /// The newest fully verified backup, never deleted.
    NewestVerified,
    /// The newest backup, never deleted.
    Newest,
    /// Under Object Lock retention: the store would refuse the delete.
    Locked,
}

/// Which backups to keep, and why; the rest may be deleted.
pub fn select(
    candidates: &[Candidate],
    keep_daily: u32,
    keep_weekly: u32,
) -> Vec<(String, Vec<Keep>)> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    let mut reasons: Vec<(String, Vec<Keep>)> =
        sorted.iter().map(|c| (c.id.clone(), Vec::new())).collect();
    let mut bucket = |period: u64, offset: u64, limit: u32, why: Keep| {
        let mut seen = BTreeSet::new();
        for (i, c) in sorted.iter().enumerate() {
            let slot = (c.created / 86_400 + offset) / period;
            if seen.len() as u32 >= limit {
                break;
            }
            if seen.insert(slot) {
                reasons[i].1.push(why);
            }
        }
    };
    bucket(1, 0, keep_daily, Keep::Daily);
    // Day 0 (1970-01-01) was a Thursday: +3 makes weeks start on Monday.
    bucket(7, 3, keep_weekly, Keep::Weekly);
    if let Some(r) = reasons.first_mut() {
        r.1.push(Keep::Newest);
    }
    if let Some(i) = sorted.iter().position(|c| c.verified) {
        reasons[i].1.push(Keep::NewestVerified);
    }
    for (i, c) in sorted.iter().enumerate() {
        if c.locked {
            reasons[i].1.push(Keep::Locked);
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, day: u64, hour: u64, verified: bool) -> Candidate {
        Candidate {
            id: id.into(),
            created: day * 86_400 + hour * 3600,
            verified,
            locked: false,
        }
    }

    fn kept(r: &[(String, Vec<Keep>)]) -> Vec<&str> {
        r.iter()
            .filter(|(_, k)| !k.is_empty())
            .map(|(id, _)| id.as_str())
            .collect()
    }

    #[test]
    fn keeps_the_newest_per_day_and_week() {
        // Days 20000.. : 20000 is a Sunday? (20000 + 3) % 7 == 4 → Friday.
        let all = vec![
            c("a", 20_000, 1, false),
            c("b", 20_000, 5, false),
            c("c", 20_001, 1, false),
            c("d", 20_008, 1, false),
            c("e", 20_009, 1, false),
        ];
        let r = select(&all, 2, 2);
        // Daily: e (20009), d (20008). Weekly: e's week, then c's week (20001 is in the week
        // of 20000/20001; b is older than c in that week).
        assert_eq!(kept(&r), vec!["e", "d", "c"]);
    }

    #[test]
    fn the_newest_verified_and_the_newest_are_never_dropped() {
        let all = vec![
            c("old-verified", 1, 0, true),
            c("mid", 2, 0, false),
            c("new", 3, 0, false),
        ];
        let r = select(&all, 0, 0);
        assert_eq!(kept(&r), vec!["new", "old-verified"]);
        let r = select(&all, 1, 0);
        assert_eq!(kept(&r), vec!["new", "old-verified"]);
    }

    #[test]
    fn keys_are_content_addressed() {
        assert_eq!(blob_key("sha256:ab"), "blobs/sha256/ab.age");
        assert_eq!(archive_key("x"), "backups/x.tar.zst.age");
    }
}
