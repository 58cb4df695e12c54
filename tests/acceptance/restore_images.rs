//! A backup's images pushed back to a registry (`ferry::ops::restore::images`, the image step
//! of `ferry restore`), against the local cluster, registry and directory store: the demo
//! runs an image pushed to the test registry; after `ferry backup create` the registry loses
//! the image (its manifest and blobs deleted: the test registry has `storage.delete`), and
//! the restore pushes it back from the encrypted store, to be pulled by digest again.

use ferry::backup::format::{self, ImageRecord};
use ferry::backup::index::{self, Index};
use ferry::backup::keys::Identities;
use ferry::backup::store::Store;
use ferry::image::Layout;
use ferry::image::oci::Platform;
use ferry::ops::backup::read_identity;
use ferry::ops::restore::images::{ImageError, ImageTarget, restore_images};
use ferry::registry::{Client, ClientOptions, CredentialFiles};

use crate::backup::{Released, created, released};
use crate::support::project::ferry;
use crate::support::{cluster, unique_name};

/// A plain-HTTP client of the test registry.
fn client() -> Client {
    Client::new(
        cluster().registry(),
        ClientOptions {
            insecure: true,
            credentials: CredentialFiles::default(),
            ..ClientOptions::default()
        },
    )
    .expect("registry client")
}

/// The demo released with an image of `layer_bytes`, backed up once: the store, the identity,
/// the backup's index and its image records (read as `ferry restore` reads them).
async fn backed_up(
    prefix: &str,
    layer_bytes: usize,
) -> (Released, Store, Identities, Index, Vec<ImageRecord>) {
    let env = released(prefix, "", layer_bytes).await;
    let dir = env.project.path();
    let backup = created(
        &ferry(
            dir,
            &["backup", "create", "t", "--insecure", "--output", "json"],
        )
        .await,
    );
    let id = backup["id"].as_str().expect("id");
    let store = Store::open(".ferry/backups", dir, "demo/t").expect("store");
    let identities = read_identity(&env.identity).expect("identity");
    let idx: Index =
        serde_json::from_slice(&store.get(&index::index_key(id)).await.expect("index"))
            .expect("index JSON");
    let archive = store.get(&idx.archive.key).await.expect("archive");
    let opened = format::open(&archive, &identities, &idx.archive.key).expect("open");
    let images = opened.manifest.expect("authenticated manifest").images;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].reference, env.image);
    (env, store, identities, idx, images)
}

/// `DELETE` of a manifest or blob in the test registry: 202.
async fn delete(repo: &str, kind: &str, digest: &str) {
    let url = format!("http://{}/v2/{repo}/{kind}/{digest}", cluster().registry());
    let resp = reqwest::Client::new()
        .delete(&url)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(
        resp.status().as_u16(),
        202,
        "DELETE {url}: {}",
        resp.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn a_registry_that_lost_the_image_gets_it_back_from_the_backup_by_digest() {
    let (env, store, identities, idx, images) = backed_up("rs-img", 48 * 1024).await;
    let registry = cluster().registry().to_string();
    let (repository, digest) = env.image.split_once('@').expect("by digest");
    let repo = repository
        .strip_prefix(&format!("{registry}/"))
        .expect("on the test registry");
    let record = &images[0];
    assert_eq!(record.blobs[0].digest, digest);
    assert_eq!(record.blobs.len(), 3, "manifest, config, layer");

    // The registry loses the image: manifest and both blobs.
    delete(repo, "manifests", digest).await;
    for blob in &record.blobs[1..] {
        delete(repo, "blobs", &blob.digest).await;
    }
    let client = client();
    assert_eq!(client.has_manifest(repo, digest).await.expect("HEAD"), None);
    for blob in &record.blobs[1..] {
        assert!(!client.has_blob(repo, &blob.digest).await.expect("HEAD"));
    }

    let target = ImageTarget {
        registry: Some(registry.clone()),
        insecure: true,
    };
    let restored = restore_images(&store, &identities, &images, &idx.blobs, &target)
        .await
        .expect("restore images");
    assert_eq!(restored.len(), 1);
    let r = &restored[0];
    assert_eq!(r.from, env.image);
    assert_eq!(r.to, env.image, "same registry, same repository, by digest");
    assert!(!r.already_present);
    assert_eq!((r.blobs_pushed, r.blobs_present), (2, 0));
    assert_eq!(
        r.bytes_pushed,
        record.blobs[1..].iter().map(|b| b.size).sum::<u64>()
    );

    // Pulled back by digest, every blob verified against its digest by the pull.
    let pulled_dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::create(pulled_dir.path()).expect("layout");
    let pulled = client
        .pull(
            repo,
            digest,
            &Platform::parse("linux/amd64").expect("platform"),
            &layout,
        )
        .await
        .expect("pull the restored image");
    assert_eq!(pulled.manifest.digest, digest);
    assert_eq!(pulled.config, record.blobs[1].digest);
    assert_eq!(pulled.layers[0].digest, record.blobs[2].digest);

    // Again: the target has it; one HEAD, nothing pushed.
    let again = restore_images(&store, &identities, &images, &idx.blobs, &target)
        .await
        .expect("restore again");
    assert!(again[0].already_present);
    assert_eq!((again[0].blobs_pushed, again[0].bytes_pushed), (0, 0));
}

#[tokio::test]
async fn a_blob_in_neither_the_store_nor_the_registry_is_missing_and_nothing_is_pushed() {
    let (env, store, identities, idx, images) = backed_up("rs-miss", 8 * 1024).await;
    let registry = cluster().registry().to_string();
    // A repository the registry has never seen, so it lacks every blob.
    let fresh = format!("restore/{}", unique_name("fresh"));
    let mut moved = images.clone();
    moved[0].repository = format!("{registry}/{fresh}");
    let layer = moved[0].blobs[2].digest.clone();
    let target = ImageTarget {
        registry: None,
        insecure: true,
    };
    let assert_missing = |err: ImageError| {
        assert_eq!(
            ferry::ui::Diagnostic::exit_status(&err),
            ferry::ui::ExitStatus::Failure
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "image {} is in neither the backup store nor registry {registry}",
                env.image
            )) && text.contains(&layer),
            "{text}"
        );
        match err {
            ImageError::Missing {
                image,
                registry: r,
                digest,
            } => assert_eq!(
                (image, r, digest),
                (env.image.clone(), registry.clone(), layer.clone())
            ),
            other => panic!("not Missing: {other:?}"),
        }
    };

    // The layer left out of the backup's index.
    let without: Vec<_> = idx
        .blobs
        .iter()
        .filter(|b| b.digest != layer)
        .cloned()
        .collect();
    assert_missing(
        restore_images(&store, &identities, &moved, &without, &target)
            .await
            .expect_err("the layer is missing"),
    );

    // The layer listed but its file gone from the store.
    let file = env
        .project
        .path()
        .join(".ferry/backups/demo/t")
        .join(index::blob_key(&layer));
    std::fs::remove_file(&file).expect("remove the stored layer");
    assert_missing(
        restore_images(&store, &identities, &moved, &idx.blobs, &target)
            .await
            .expect_err("the layer is missing"),
    );

    // Both checked before any upload: the fresh repository got nothing.
    let client = client();
    assert_eq!(
        client
            .has_manifest(&fresh, &moved[0].blobs[0].digest)
            .await
            .expect("HEAD"),
        None
    );
    assert!(
        !client
            .has_blob(&fresh, &moved[0].blobs[1].digest)
            .await
            .expect("HEAD")
    );
}
