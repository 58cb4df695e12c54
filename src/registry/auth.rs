//! Registry authentication: parsing `WWW-Authenticate` challenges (Basic and Bearer), the
//! token endpoint's answer (distribution's token spec and its OAuth2 variant), and where
//! credentials may go ([`check_realm`]).
//!
//! Credentials go only to the registry they were configured for and to the token realm that
//! registry named, and a realm is followed only over https (plain http only to a loopback
//! realm with `--insecure`), so a registry cannot send them in clear to another host.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service the token is for.
        service: Option<String>,
        /// The scope the registry asked for, if it said.
        scope: Option<String>,
        /// `error="insufficient_scope"` and friends.
        error: Option<String>,
    },
}

impl Challenge {
    /// Parses a header value; `None` for unknown schemes or a Bearer without a realm.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(params);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
                error: params.get("error").cloned(),
            }),
            _ => None,
        }
    }
}

/// `k="v", k2=v2` → map; quoted values may contain commas.
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start_matches([',', ' ']);
    }
    out
}

/// Why a token realm is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmRefusal {
    /// Not an absolute http(s) URL.
    NotAUrl,
    /// Plain http to a host that is not loopback.
    PlainHttp,
    /// Plain http to a loopback host without `--insecure`.
    PlainHttpWithoutInsecure,
}

impl RealmRefusal {
    /// Why, in words (for the error message).
    pub fn reason(self) -> &'static str {
        match self {
            RealmRefusal::NotAUrl => "it is not an https URL",
            RealmRefusal::PlainHttp => {
                "it is plain http to a host that is not loopback, so credentials and tokens \
                 would cross the network in clear"
            }
            RealmRefusal::PlainHttpWithoutInsecure => {
                "it is plain http and --insecure was not given"
            }
        }
    }
}

/// Checks that the token endpoint `realm`, named by a registry's challenge, may receive
/// credentials: https anywhere (the registry named it), or http only to a loopback host and
/// only with `insecure`.
///
/// # Errors
/// The [`RealmRefusal`] that applies.
pub fn check_realm(realm: &str, insecure: bool) -> Result<(), RealmRefusal> {
    let url = reqwest::Url::parse(realm).map_err(|_| RealmRefusal::NotAUrl)?;
    let host = url.host_str().ok_or(RealmRefusal::NotAUrl)?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if !super::client::is_loopback(host) => Err(RealmRefusal::PlainHttp),
        "http" if !insecure => Err(RealmRefusal::PlainHttpWithoutInsecure),
        "http" => Ok(()),
        _ => Err(RealmRefusal::NotAUrl),
    }
}

/// A token endpoint's answer. `Debug` shows the tokens as `***`.
#[derive(Clone, Deserialize)]
pub struct TokenAnswer {
    /// The token (distribution's name).
    #[serde(default)]
    pub token: Option<String>,
    /// The token (OAuth2's name).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (default 60).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |t: &Option<String>| t.as_ref().map(|_| "***");
        f.debug_struct("TokenAnswer")
            .field("token", &hidden(&self.token))
            .field("access_token", &hidden(&self.access_token))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl TokenAnswer {
    /// The token, whichever field carries it.
    pub fn token(&self) -> Option<&str> {
        self.token
            .as_deref()
            .or(self.access_token.as_deref())
            .filter(|t| !t.is_empty())
    }
}

/// `application/x-www-form-urlencoded` / query escaping of one value.
pub fn form_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="http://127.0.0.1:1/token",service="test-registry",scope="repository:demo/app:push,pull",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("test-registry".into()),
                scope: Some("repository:demo/app:push,pull".into()),
                error: Some("insufficient_scope".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn realms_must_be_https_or_loopback_http_with_insecure() {
        use RealmRefusal::*;
        let cases = [
            ("https://auth.example.com/token", false, Ok(())),
            ("https://127.0.0.1:5001/token", false, Ok(())),
            ("http://127.0.0.1:5001/token", true, Ok(())),
            ("http://localhost:5001/token", true, Ok(())),
            ("http://[::1]:5001/token", true, Ok(())),
            (
                "http://127.0.0.1:5001/token",
                false,
                Err(PlainHttpWithoutInsecure),
            ),
            ("http://auth.example.com/token", true, Err(PlainHttp)),
            ("http://auth.example.com/token", false, Err(PlainHttp)),
            ("http://10.0.0.1/token", true, Err(PlainHttp)),
            ("ftp://auth.example.com/token", false, Err(NotAUrl)),
            ("/token", false, Err(NotAUrl)),
        ];
        for (realm, insecure, expected) in cases {
            assert_eq!(check_realm(realm, insecure), expected, "{realm} {insecure}");
        }
    }

    #[test]
    fn token_answers_hide_their_tokens_in_debug() {
        let answer: TokenAnswer = serde_json::from_str(
            r#"{"token": "tok-3141-secret", "access_token": "acc-2718-secret", "expires_in": 300}"#,
        )
        .unwrap();
        let debug = format!("{answer:?}");
        assert!(
            !debug.contains("tok-3141") && !debug.contains("acc-2718"),
            "{debug}"
        );
        assert!(debug.contains("expires_in: Some(300)"), "{debug}");
    }

    #[test]
    fn values_are_escaped_for_queries() {
        assert_eq!(
            form_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
