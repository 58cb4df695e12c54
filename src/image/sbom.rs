//! Software bills of materials of a built image: SPDX 2.3 JSON and CycloneDX 1.6 JSON, both
//! listing every regular file of the image with its sha256 (and sha1, which SPDX requires),
//! the layer it came from, and the packages of any `Cargo.lock` an image binary was built from.
//!
//! Deterministic like the image: the creation time is `SOURCE_DATE_EPOCH`, the document
//! namespace and serial number derive from the image's manifest digest, no tool version.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::layer::FileRecord;

/// A package of a `Cargo.lock`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Package {
    /// Crate name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `registry+https://…` or `git+…`; `None` for workspace members.
    pub source: Option<String>,
    /// The registry's sha256 of the `.crate` file.
    pub checksum: Option<String>,
}

impl Package {
    /// A package URL for crates from crates.io; `None` for others.
    pub fn purl(&self) -> Option<String> {
        self.source
            .as_deref()
            .filter(|s| {
                s.contains("crates.io-index") || s.starts_with("sparse+https://index.crates.io")
            })
            .map(|_| format!("pkg:cargo/{}@{}", self.name, self.version))
    }
}

/// Parses the `[[package]]` tables of a `Cargo.lock` (format v1 to v4): name, version,
/// source and checksum. Unknown keys and other tables are ignored.
pub fn parse_cargo_lock(text: &str) -> Vec<Package> {
    let mut packages = BTreeSet::new();
    let mut current: Option<Package> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            if let Some(p) = current.take().filter(|p| !p.name.is_empty()) {
                packages.insert(p);
            }
            if line == "[[package]]" {
                current = Some(Package {
                    name: String::new(),
                    version: String::new(),
                    source: None,
                    checksum: None,
                });
            }
            continue;
        }
        let (Some(p), Some((key, value))) = (current.as_mut(), line.split_once('=')) else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim() {
            "name" => p.name = value,
            "version" => p.version = value,
            "source" => p.source = Some(value),
            "checksum" => p.checksum = Some(value),
            _ => {}
        }
    }
    if let Some(p) = current.filter(|p| !p.name.is_empty()) {
        packages.insert(p);
    }
    packages.into_iter().collect()
}

/// What the SBOMs describe.
#[derive(Debug, Clone, Copy)]
pub struct SbomInput<'a> {
    /// The image's name in `ferry.yaml`.
    pub image: &'a str,
    /// Its repository.
    pub repository: &'a str,
    /// Its tag.
    pub tag: &'a str,
    /// The image manifest's digest.
    pub manifest_digest: &'a str,
    /// RFC 3339 creation time (from `SOURCE_DATE_EPOCH`).
    pub created: &'a str,
    /// Every regular file with the name of its layer, bottom layer first.
    pub files: &'a [(String, FileRecord)],
    /// Packages from `Cargo.lock` files.
    pub packages: &'a [Package],
}

/// The SPDX 2.3 JSON document.
pub fn spdx(input: &SbomInput<'_>) -> Value {
    let hex = super::oci::digest_hex(input.manifest_digest);
    let files: Vec<Value> = input
        .files
        .iter()
        .enumerate()
        .map(|(i, (layer, f))| {
            json!({
                "SPDXID": format!("SPDXRef-File-{i}"),
                "fileName": format!(".{}", f.path),
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
                "licenseConcluded": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "comment": format!("layer: {layer}"),
            })
        })
        .collect();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": input.repository,
        "versionInfo": input.tag,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex}],
        "licenseConcluded": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": oci_purl(input),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for i in 0..input.files.len() {
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": format!("SPDXRef-File-{i}"),
        }));
    }
    for (i, p) in input.packages.iter().enumerate() {
        let mut package = json!({
            "SPDXID": format!("SPDXRef-Package-{i}"),
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": p.purl().map_or_else(
                || "NOASSERTION".to_string(),
                |_| format!("https://crates.io/api/v1/crates/{}/{}/download", p.name, p.version),
            ),
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        });
        if let Some(checksum) = &p.checksum {
            package["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": checksum}]);
        }
        if let Some(purl) = p.purl() {
            package["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }]);
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": format!("SPDXRef-Package-{i}"),
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}:{}", input.repository, input.tag),
        "documentNamespace": format!("https://ferry.invalid/spdx/{}/{hex}", input.image),
        "creationInfo": {"created": input.created, "creators": ["Tool: ferry"]},
        "documentDescribes": ["SPDXRef-Image"],
        "packages": packages,
        "files": files,
        "relationships": relationships,
    })
}

/// The CycloneDX 1.6 JSON document.
pub fn cyclonedx(input: &SbomInput<'_>) -> Value {
    let mut components: Vec<Value> = input
        .files
        .iter()
        .map(|(layer, f)| {
            json!({
                "type": "file",
                "bom-ref": format!("file:{}", f.path),
                "name": f.path,
                "hashes": [
                    {"alg": "SHA-1", "content": f.sha1},
                    {"alg": "SHA-256", "content": f.sha256},
                ],
                "properties": [{"name": "ferry:layer", "value": layer}],
            })
        })
        .collect();
    for p in input.packages {
        let mut component = json!({
            "type": "library",
            "bom-ref": format!("cargo:{}@{}", p.name, p.version),
            "name": p.name,
            "version": p.version,
        });
        if let Some(purl) = p.purl() {
            component["purl"] = json!(purl);
        }
        if let Some(checksum) = &p.checksum {
            component["hashes"] = json!([{"alg": "SHA-256", "content": checksum}]);
        }
        components.push(component);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_from(input.manifest_digest)),
        "version": 1,
        "metadata": {
            "timestamp": input.created,
            "tools": {"components": [{"type": "application", "name": "ferry"}]},
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": input.repository,
                "version": input.tag,
                "purl": oci_purl(input),
                "hashes": [{"alg": "SHA-256", "content": super::oci::digest_hex(input.manifest_digest)}],
            },
        },
        "components": components,
    })
}

/// `pkg:oci/<name>@sha256%3A<hex>?repository_url=<repository>`.
fn oci_purl(input: &SbomInput<'_>) -> String {
    let last = input
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(input.repository);
    format!(
        "pkg:oci/{last}@{}?repository_url={}&tag={}",
        input.manifest_digest.replace(':', "%3A"),
        input.repository,
        input.tag
    )
}

/// A version-5-shaped UUID derived from `seed`, stable across builds of the same image.
fn uuid_from(seed: &str) -> String {
    let hash = Sha256::digest(format!("ferry cyclonedx {seed}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "demo-web"
version = "0.1.0"

[[package]]
name = "itoa"
version = "1.0.15"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "4a5f13b858c8d314ee3e8f639011f7ccefe71f97f96e50151fb991f267928e2c"
dependencies = [
 "x",
]
"#;

    fn record(path: &str) -> FileRecord {
        FileRecord {
            path: path.into(),
            size: 1,
            sha256: format!("{:0>64}", path.len()),
            sha1: format!("{:0>40}", path.len()),
        }
    }

    #[test]
    fn cargo_lock_packages_are_parsed() {
        let packages = parse_cargo_lock(LOCK);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "demo-web");
        assert_eq!(packages[0].purl(), None);
        assert_eq!(packages[1].purl().as_deref(), Some("pkg:cargo/itoa@1.0.15"));
        assert!(packages[1].checksum.is_some());
    }

    #[test]
    fn both_documents_list_every_file_and_package() {
        let files = vec![
            ("os".to_string(), record("/etc/passwd")),
            ("app".to_string(), record("/app/web")),
        ];
        let packages = parse_cargo_lock(LOCK);
        let input = SbomInput {
            image: "web",
            repository: "r/web",
            tag: "dev",
            manifest_digest: "sha256:abc",
            created: "1970-01-01T00:00:00Z",
            files: &files,
            packages: &packages,
        };
        let spdx = spdx(&input);
        assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
        let names: Vec<&str> = spdx["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["fileName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["./etc/passwd", "./app/web"]);
        assert_eq!(
            spdx["files"][1]["checksums"][1]["checksumValue"],
            files[1].1.sha256
        );
        assert_eq!(spdx["packages"].as_array().unwrap().len(), 3);
        let cdx = cyclonedx(&input);
        assert_eq!(cdx["specVersion"], "1.6");
        let comps = cdx["components"].as_array().unwrap();
        assert_eq!(comps.len(), 4);
        assert_eq!(comps[1]["name"], "/app/web");
        assert_eq!(comps[3]["purl"], "pkg:cargo/itoa@1.0.15");
        let serial = cdx["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36);
        assert_eq!(cyclonedx(&input), cdx, "deterministic");
    }
}
