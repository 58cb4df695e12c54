//! age keys, pure: recipients (`age1…`, public, from `ferry.yaml`) to encrypt to, identities
//! (`AGE-SECRET-KEY-1…`, secret, from `--identity FILE`) to decrypt with, and new key pairs.
//!
//! An identity never reaches a log or an error: [`Identities`] and [`NewKey`] print `***` in
//! `Debug`. Reading the identity file is the caller's job; nothing here touches a disk.

use std::str::FromStr;

use age::secrecy::ExposeSecret as _;

/// Errors about keys; all are bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `backup.recipients` is empty.
    #[error("`backup.recipients` in ferry.yaml lists no age recipient")]
    NoRecipients,
    /// A recipient is not an x25519 `age1…` key.
    #[error("`{recipient}` in `backup.recipients` is not an age recipient (age1…)")]
    BadRecipient {
        /// The text as written.
        recipient: String,
    },
    /// The identity file holds no usable identity.
    #[error("{source_name} holds no age identity (AGE-SECRET-KEY-1…)")]
    BadIdentity {
        /// Where it came from (a path).
        source_name: String,
    },
}

/// The public keys a backup is encrypted to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
    text: Vec<String>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.text).finish()
    }
}

impl Recipients {
    /// Parses `age1…` recipients.
    ///
    /// # Errors
    /// [`Error::NoRecipients`], [`Error::BadRecipient`].
    pub fn parse(texts: &[String]) -> Result<Recipients, Error> {
        if texts.is_empty() {
            return Err(Error::NoRecipients);
        }
        let keys = texts
            .iter()
            .map(|t| {
                age::x25519::Recipient::from_str(t.trim()).map_err(|_| Error::BadRecipient {
                    recipient: t.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Recipients {
            keys,
            text: texts.to_vec(),
        })
    }

    /// The recipients as written.
    pub fn as_text(&self) -> &[String] {
        &self.text
    }

    /// An age encryptor to all of them.
    ///
    /// # Errors
    /// age's refusal (it has none for non-empty x25519 lists).
    pub fn encryptor(&self) -> Result<age::Encryptor, age::EncryptError> {
        age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
    }
}

/// Secret keys that can decrypt backups. `Debug` prints `***`.
pub struct Identities {
    keys: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identities(***)")
    }
}

impl Identities {
    /// Parses an age identity file: `AGE-SECRET-KEY-1…` lines, `#` comments, blank lines.
    ///
    /// # Errors
    /// [`Error::BadIdentity`] when no line is an identity or one is malformed.
    pub fn parse(text: &str, source_name: &str) -> Result<Identities, Error> {
        let bad = || Error::BadIdentity {
            source_name: source_name.to_string(),
        };
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| age::x25519::Identity::from_str(l).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(bad());
        }
        Ok(Identities { keys })
    }

    /// The identities, for age.
    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }
}

/// A new key pair. `Debug` hides the secret.
pub struct NewKey {
    secret: String,
    /// Its public recipient (`age1…`).
    pub recipient: String,
    /// When it was made (RFC 3339), for the file's comment.
    pub created: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("secret", &"***")
            .field("recipient", &self.recipient)
            .finish()
    }
}

impl NewKey {
    /// The secret key line.
    pub fn secret_text(&self) -> &str {
        &self.secret
    }

    /// The identity file, in the layout `age-keygen` writes.
    pub fn file_text(&self) -> String {
        format!(
            "# created: {}\n# public key: {}\n{}\n",
            self.created, self.recipient, self.secret
        )
    }
}

/// Generates a new x25519 key pair.
pub fn generate() -> NewKey {
    let identity = age::x25519::Identity::generate();
    NewKey {
        secret: identity.to_string().expose_secret().to_string(),
        recipient: identity.to_public().to_string(),
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_parses_back_and_hides_its_secret() {
        let key = generate();
        assert!(key.recipient.starts_with("age1"));
        assert!(key.secret_text().starts_with("AGE-SECRET-KEY-1"));
        assert!(!format!("{key:?}").contains("AGE-SECRET"));
        let ids = Identities::parse(&key.file_text(), "f").unwrap();
        assert_eq!(format!("{ids:?}"), "Identities(***)");
        Recipients::parse(&[key.recipient]).unwrap();
    }

    #[test]
    fn bad_keys_are_named() {
        let e = Recipients::parse(&["age1nope".into()]).unwrap_err();
        assert!(e.to_string().contains("age1nope"));
        assert!(matches!(Recipients::parse(&[]), Err(Error::NoRecipients)));
        assert!(Identities::parse("# nothing\n", "f").is_err());
    }
}
