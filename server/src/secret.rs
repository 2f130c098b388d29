//! The installation's secret key, kept outside the database (`RENKEI_SECRET_KEY_FILE`), and
//! what is encrypted under it: the TOTP secrets. Someone who reads the database (a
//! backup, a dump, an SQL injection elsewhere) then learns no second factor; someone who
//! writes it cannot move a secret to another account (the account's id is the associated
//! data).
//!
//! AES-256-GCM from RustCrypto's `aes-gcm` (already in the tree through Web Push), a
//! random 96-bit nonce per encryption (a handful of writes per account, far below GCM's
//! bounds). A sealed value is `version (1) ‖ key id (4) ‖ nonce (12) ‖ ciphertext ‖ tag`;
//! the key id (a hash of the key, not the key) lets a node started with another key file
//! say so instead of "does not decrypt".

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore as _;
use renkei_protocol::UserId;
use sha2::{Digest as _, Sha256};

use crate::store::{Store, StoreError};

/// The format byte of values sealed by this version.
const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Bytes of the key; the file holds them as hex digits.
const KEY_LEN: usize = 32;

/// Why the key file could not be used; the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RENKEI_SECRET_KEY_FILE {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "RENKEI_SECRET_KEY_FILE {} may be read by other users (mode {mode:04o}): \
         it must be 0600 (chmod 600 {}), owned by the server's user",
        .path.display(),
        .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("RENKEI_SECRET_KEY_FILE {} is not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "RENKEI_SECRET_KEY_FILE {} does not hold a key: expected 64 hex digits \
         (32 bytes, as `openssl rand -hex 32` writes), found {found} characters",
        .path.display()
    )]
    Malformed { path: PathBuf, found: usize },
    #[error(
        "RENKEI_SECRET_KEY_FILE {} does not exist, but the database holds TOTP secrets \
         encrypted under key {key}: copy that key file here (from another node or its \
         backup) rather than letting a new key be made; see docs/operations.md if it is lost",
        .path.display()
    )]
    Missing { path: PathBuf, key: KeyId },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// Why a sealed value did not open. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it is not in a known encrypted format")]
    Format,
    #[error(
        "it was encrypted under key {found}, but RENKEI_SECRET_KEY_FILE holds key {ours}: \
         every node needs the same key file"
    )]
    OtherKey { found: KeyId, ours: KeyId },
    #[error("it does not decrypt for this account (altered, or moved from another account)")]
    Rejected,
}

/// A key's public name: the first bytes of a hash of it, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl KeyId {
    /// The key id a sealed value names, if it is in the format.
    pub fn of_sealed(sealed: &[u8]) -> Option<KeyId> {
        if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
            return None;
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&sealed[1..1 + KEY_ID_LEN]);
        Some(KeyId(id))
    }
}

/// The secret key: encrypts and decrypts values bound to an account.
#[derive(Clone)]
pub struct SecretKey {
    cipher: Aes256Gcm,
    id: KeyId,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        write!(f, "SecretKey({})", self.id)
    }
}

/// What a TOTP secret's encryption is bound to: its purpose and its account.
fn associated_data(user: UserId) -> [u8; 21] {
    let mut aad = [0u8; 21];
    aad[..12].copy_from_slice(b"renkei totp\0");
    aad[12] = VERSION;
    aad[13..].copy_from_slice(&user.to_be_bytes());
    aad
}

impl SecretKey {
    /// The key of these bytes.
    pub fn from_bytes(key: &[u8; KEY_LEN]) -> SecretKey {
        let mut hasher = Sha256::new();
        hasher.update(b"renkei secret key id\0");
        hasher.update(key);
        let digest = hasher.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        SecretKey {
            cipher: Aes256Gcm::new(key.into()),
            id: KeyId(id),
        }
    }

    /// This key's public name.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// `secret`, the TOTP secret of `user`, encrypted.
    pub fn seal_totp(&self, user: UserId, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(user);
        // AES-GCM encryption fails only beyond 64 GiB of plaintext.
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut sealed = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&self.id.0);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// The TOTP secret of `user` from its sealed form.
    pub fn open_totp(&self, user: UserId, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let found = KeyId::of_sealed(sealed).ok_or(OpenError::Format)?;
        if found != self.id {
            return Err(OpenError::OtherKey {
                found,
                ours: self.id,
            });
        }
        let aad = associated_data(user);
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]),
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Rejected)
    }

    /// Reads the key file at `path`, refusing one others may read or of the wrong length.
    pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(io)?;
        if !metadata.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let text = text.trim();
        let malformed = || KeyError::Malformed {
            path: path.to_path_buf(),
            found: text.chars().count(),
        };
        if text.len() != KEY_LEN * 2 {
            return Err(malformed());
        }
        let mut key = [0u8; KEY_LEN];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2).ok_or_else(malformed)?, 16)
                .map_err(|_| malformed())?;
        }
        Ok(SecretKey::from_bytes(&key))
    }

    /// Writes a new random key to `path` (mode 0600, whole or not at all: another process
    /// creating it at the same time keeps its own and this one reads it). False when the
    /// file existed already.
    fn create(path: &Path) -> Result<bool, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut key = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.new", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(format!("{text}\n").as_bytes())?;
            file.sync_all()
        })();
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(io(err));
        }
        // A hard link never replaces an existing file: of two nodes creating it at once,
        // one key wins and both read it.
        let linked = std::fs::hard_link(&temporary, path);
        let _ = std::fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(io(err)),
        }
    }
}

/// Opens the key at `path`, making one if there is none (unless the database already
/// holds secrets under a key: then it is missing, not new), and encrypts the TOTP
/// secrets still stored in the clear (written before migration 0010), once.
pub async fn open(path: &Path, store: &dyn Store) -> Result<SecretKey, KeyError> {
    let sealed = store.sealed_totp_secrets().await?;
    if !path.exists() {
        if let Some(key) = sealed
            .iter()
            .find_map(|(_, secret)| KeyId::of_sealed(secret))
        {
            return Err(KeyError::Missing {
                path: path.to_path_buf(),
                key,
            });
        }
        if SecretKey::create(path)? {
            tracing::info!(
                path = %path.display(),
                "secret key created (mode 0600): back it up apart from the database"
            );
        }
    }
    let key = SecretKey::read(path)?;
    let encrypted = store
        .encrypt_plain_totp(&|user, secret| key.seal_totp(user, secret))
        .await?;
    if encrypted > 0 {
        tracing::info!(
            accounts = encrypted,
            key = %key.id(),
            "TOTP secrets stored in the clear are now encrypted"
        );
    }
    let foreign = sealed
        .iter()
        .filter(|(_, secret)| KeyId::of_sealed(secret) != Some(key.id()))
        .count();
    if foreign > 0 {
        tracing::error!(
            accounts = foreign,
            key = %key.id(),
            "TOTP secrets encrypted under another key than RENKEI_SECRET_KEY_FILE's: \
             those accounts cannot log in until the right key file is in place \
             (every node needs the same file)"
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; KEY_LEN])
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_account_and_key() {
        let secret = b"12345678901234567890";
        let sealed = key(1).seal_totp(7, secret);
        assert_eq!(sealed.len(), HEADER_LEN + secret.len() + TAG_LEN);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(key(1).open_totp(7, &sealed).as_deref(), Ok(&secret[..]));
        assert_ne!(
            key(1).seal_totp(7, secret),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(key(1).open_totp(8, &sealed), Err(OpenError::Rejected));
        assert_eq!(
            key(2).open_totp(7, &sealed),
            Err(OpenError::OtherKey {
                found: key(1).id(),
                ours: key(2).id()
            })
        );
        let mut altered = sealed.clone();
        *altered.last_mut().expect("a tag") ^= 1;
        assert_eq!(key(1).open_totp(7, &altered), Err(OpenError::Rejected));
        assert_eq!(key(1).open_totp(7, secret), Err(OpenError::Format));
    }

    #[test]
    fn the_key_file_is_made_private_and_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub").join("secret.key");
        assert!(SecretKey::create(&path).expect("created"));
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = SecretKey::read(&path).expect("reads").id();
        assert!(!SecretKey::create(&path).expect("kept"), "never replaced");
        assert_eq!(SecretKey::read(&path).expect("reads").id(), first);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            SecretKey::read(&path),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, "abcd\n").expect("write");
        assert!(matches!(
            SecretKey::read(&path),
            Err(KeyError::Malformed { found: 4, .. })
        ));
        std::fs::write(&path, "zz".repeat(KEY_LEN)).expect("write");
        assert!(matches!(
            SecretKey::read(&path),
            Err(KeyError::Malformed { .. })
        ));
    }
}
