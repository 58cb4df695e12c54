//! The local S3 server (s3s-fs) stores and serves objects, and checks SigV4 signatures.

use reqwest::StatusCode;

use crate::support::sigv4::sign;
use crate::support::{S3, cluster, unique_name};

async fn send(
    http: &reqwest::Client,
    s3: &S3,
    method: &str,
    key: &str,
    query: &[(&str, &str)],
    body: &[u8],
) -> reqwest::Response {
    let (url, headers) = sign(s3, method, key, query, body);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(method, url).body(body.to_vec());
    for (name, value) in headers {
        req = req.header(name, value);
    }
    req.send().await.expect("S3 request")
}

#[tokio::test]
async fn an_object_round_trips_through_s3() {
    let s3 = cluster().s3();
    let http = reqwest::Client::new();
    let prefix = format!("acceptance/{}/", unique_name("object"));
    let key = format!("{prefix}hello world.txt");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();

    let put = send(&http, &s3, "PUT", &key, &[], &body).await;
    assert_eq!(
        put.status(),
        StatusCode::OK,
        "PUT: {}",
        put.text().await.unwrap_or_default()
    );

    let get = send(&http, &s3, "GET", &key, &[], b"").await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.bytes().await.expect("body").as_ref(), body.as_slice());

    let list = send(
        &http,
        &s3,
        "GET",
        "",
        &[("list-type", "2"), ("prefix", &prefix)],
        b"",
    )
    .await;
    assert_eq!(list.status(), StatusCode::OK);
    let xml = list.text().await.expect("body");
    assert!(xml.contains(&format!("<Key>{key}</Key>")), "{xml}");

    let delete = send(&http, &s3, "DELETE", &key, &[], b"").await;
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
    let gone = send(&http, &s3, "GET", &key, &[], b"").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn s3_refuses_a_wrong_signature_and_an_unsigned_request() {
    let s3 = cluster().s3();
    let http = reqwest::Client::new();
    let key = format!("acceptance/{}", unique_name("forbidden"));

    let wrong = S3 {
        secret_key: format!("{}-wrong", s3.secret_key),
        ..s3.clone()
    };
    let put = send(&http, &wrong, "PUT", &key, &[], b"nope").await;
    assert_eq!(put.status(), StatusCode::FORBIDDEN);
    let body = put.text().await.expect("body");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");

    let unsigned = http
        .get(format!("{}/{}/{key}", s3.endpoint, s3.bucket))
        .send()
        .await
        .expect("GET");
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
    let missing = send(&http, &s3, "GET", &key, &[], b"").await;
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "the refused PUT stored nothing"
    );
}
