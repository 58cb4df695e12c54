//! A small AWS Signature Version 4 signer for S3 requests in tests (path-style URLs, signed
//! payload hash), so the S3 tests need no SDK. Follows the AWS "Create a signed AWS API request"
//! steps: canonical request, string to sign, derived signing key, `Authorization` header.

use sha2::{Digest, Sha256};

use super::S3;

/// Headers to add to a request: `(name, value)`.
pub type Headers = Vec<(&'static str, String)>;

/// Signs `method` on `/{bucket}/{key}` (plus an optional query) at the current time.
/// Returns the URL and the headers to send (`x-amz-date`, `x-amz-content-sha256`,
/// `authorization`). `key` is URI-encoded here, segment by segment.
pub fn sign(
    s3: &S3,
    method: &str,
    key: &str,
    query: &[(&str, &str)],
    body: &[u8],
) -> (String, Headers) {
    sign_at(s3, method, key, query, body, std::time::SystemTime::now())
}

pub fn sign_at(
    s3: &S3,
    method: &str,
    key: &str,
    query: &[(&str, &str)],
    body: &[u8],
    at: std::time::SystemTime,
) -> (String, Headers) {
    let host = s3
        .endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let path = if key.is_empty() {
        format!("/{}", uri_encode(&s3.bucket, true))
    } else {
        format!(
            "/{}/{}",
            uri_encode(&s3.bucket, true),
            uri_encode(key, false)
        )
    };
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let (date, amz_date) = timestamps(at);
    let payload_hash = hex::encode(Sha256::digest(body));
    let canonical_headers =
        format!("host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n");
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    );

    let scope = format!("{date}/{}/s3/aws4_request", s3.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request))
    );
    let k_date = hmac_sha256(format!("AWS4{}", s3.secret_key).as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, s3.region.as_bytes());
    let k_service = hmac_sha256(&k_region, b"s3");
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex::encode(hmac_sha256(&k_signing, string_to_sign.as_bytes()));

    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        s3.access_key
    );
    let url = if canonical_query.is_empty() {
        format!("{}{path}", s3.endpoint.trim_end_matches('/'))
    } else {
        format!(
            "{}{path}?{canonical_query}",
            s3.endpoint.trim_end_matches('/')
        )
    };
    let headers = vec![
        ("x-amz-date", amz_date),
        ("x-amz-content-sha256", payload_hash),
        ("authorization", authorization),
    ];
    (url, headers)
}

/// HMAC-SHA256 (RFC 2104), block size 64.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// SigV4 URI encoding: unreserved characters stay, everything else is %XX; `/` stays in keys.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` in UTC.
fn timestamps(at: std::time::SystemTime) -> (String, String) {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let amz = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    (date, amz)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing-key example of the AWS SigV4 documentation.
    #[test]
    fn derives_the_documented_signing_key() {
        let k = hmac_sha256(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        let k = hmac_sha256(&k, b"us-east-1");
        let k = hmac_sha256(&k, b"iam");
        let k = hmac_sha256(&k, b"aws4_request");
        assert_eq!(
            hex::encode(k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn formats_utc_timestamps() {
        // 2013-05-24T00:00:00Z, the date of the AWS S3 SigV4 examples.
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600);
        assert_eq!(
            timestamps(at),
            ("20130524".into(), "20130524T000000Z".into())
        );
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(
            timestamps(at),
            ("20000229".into(), "20000229T010203Z".into())
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(uri_encode("a b/c~d", false), "a%20b/c~d");
        assert_eq!(uri_encode("a b/c", true), "a%20b%2Fc");
    }
}
