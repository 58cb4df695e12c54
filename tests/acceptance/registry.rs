//! The local OCI registry (Debian's docker-registry, distribution 2.8) accepts blobs and
//! manifests over the OCI distribution API and serves back exactly the bytes pushed.

use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{cluster, unique_name};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Resolves the `Location` of an upload session against the registry's base URL.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// Starts an upload session (POST), returning its `Location`.
async fn start_upload(http: &reqwest::Client, base: &str, repo: &str) -> String {
    let resp = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("POST upload");
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "start upload: {resp:?}"
    );
    let location = resp
        .headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .expect("ASCII");
    absolute(base, location)
}

/// Finishes an upload session with one PUT carrying the whole blob.
async fn finish_upload(
    http: &reqwest::Client,
    location: &str,
    digest: &str,
    blob: &[u8],
) -> reqwest::Response {
    let sep = if location.contains('?') { '&' } else { '?' };
    http.put(format!("{location}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .await
        .expect("PUT upload")
}

async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, blob: &[u8]) -> String {
    let d = digest(blob);
    let location = start_upload(http, base, repo).await;
    let resp = finish_upload(http, &location, &d, blob).await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "finish upload: {resp:?}"
    );
    assert_eq!(
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(d.as_str())
    );
    d
}

#[tokio::test]
async fn a_blob_and_a_manifest_round_trip_through_the_registry() {
    let base = format!("http://{}", cluster().registry());
    let http = reqwest::Client::new();
    let repo = format!("ferry-test/{}", unique_name("roundtrip"));

    let v2 = http
        .get(format!("{base}/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(v2.status(), StatusCode::OK);

    let layer = format!("layer bytes of {repo}\n").repeat(1000).into_bytes();
    let layer_digest = push_blob(&http, &base, &repo, &layer).await;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] }
    }))
    .expect("json");
    let config_digest = push_blob(&http, &base, &repo, &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len() }]
    }))
    .expect("json");
    let manifest_digest = digest(&manifest);

    let put = http
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("PUT manifest");
    assert_eq!(put.status(), StatusCode::CREATED, "{put:?}");
    assert_eq!(
        put.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(manifest_digest.as_str())
    );

    for reference in ["v1", manifest_digest.as_str()] {
        let get = http
            .get(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("GET manifest");
        assert_eq!(get.status(), StatusCode::OK, "manifest {reference}");
        assert_eq!(
            get.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            get.bytes().await.expect("body").as_ref(),
            manifest.as_slice(),
            "manifest {reference}"
        );
    }
    for (d, bytes) in [(&layer_digest, &layer), (&config_digest, &config)] {
        let get = http
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .expect("GET blob");
        assert_eq!(get.status(), StatusCode::OK, "blob {d}");
        assert_eq!(
            get.bytes().await.expect("body").as_ref(),
            bytes.as_slice(),
            "blob {d}"
        );
    }
    let tags: serde_json::Value = http
        .get(format!("{base}/v2/{repo}/tags/list"))
        .send()
        .await
        .expect("tags")
        .json()
        .await
        .expect("json");
    assert_eq!(tags["tags"], json!(["v1"]));
}

#[tokio::test]
async fn the_registry_refuses_a_blob_whose_digest_does_not_match() {
    let base = format!("http://{}", cluster().registry());
    let http = reqwest::Client::new();
    let repo = format!("ferry-test/{}", unique_name("bad-digest"));
    let location = start_upload(&http, &base, &repo).await;
    let resp = finish_upload(
        &http,
        &location,
        &digest(b"something else"),
        b"the real bytes",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{resp:?}");
    let body = resp.text().await.expect("body");
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    let head = http
        .head(format!(
            "{base}/v2/{repo}/blobs/{}",
            digest(b"the real bytes")
        ))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
}
