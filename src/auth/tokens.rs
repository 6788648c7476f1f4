//! Bearer tokens: making one ([`new_token`]), hashing it ([`TokenHash::of`]), the token file that lists the hashes
//! a server accepts ([`TokenTable::parse`]), and that file kept current while the server runs ([`TokenFile`]).
//!
//! The file never holds a token, only its SHA-256 hash, so a copy of it (a backup, a config repository) lets no one
//! call the server. A fast hash is the right one here: a token is 256 random bits, so no one can guess it however
//! fast the hash is; slow password hashes (bcrypt, Argon2) exist for low-entropy passwords, and would cost every
//! call tens of milliseconds for nothing. A presented token is compared with every entry in constant time.
//!
//! One credential a line, `ROLE[:BINDING] sha256:HEX`; `#` starts a comment:
//!
//! ```text
//! operator:alice sha256:3b4c…            # an operator (the binding is a name, for the logs)
//! reader sha256:9e1f…
//! collector:0b9d2a1c-5e8f-4a4b-9d3e-2f6c7a8b9c0d sha256:77aa…   # this collector id only
//! producer sha256:c0de…                  # any producer id, no pins
//! producer:0b9d2a1c-*  sha256:51e2…      # ids starting with 0b9d2a1c- only
//! producer:<uuid>,<uuid> sha256:a1b2…    # these ids only
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Principal, Role};
use crate::error_chain::chain;

/// What every token [`new_token`] makes starts with, so a secret scanner (and a person) can tell one apart.
pub const TOKEN_PREFIX: &str = "roster_";

/// How often a server checks its token file for changes: an edited file is in force within this time.
pub const TOKEN_FILE_CHECK: Duration = Duration::from_secs(1);

/// A new token: [`TOKEN_PREFIX`] and 32 random bytes in hex (256 bits from the operating system's generator).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 hash of a token, as a token file stores it (`sha256:` and 64 hex digits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The first 8 hex digits: names a token in logs without revealing it.
    pub fn fingerprint(&self) -> String {
        hex(&self.0[..4])
    }

    fn parse(text: &str) -> Result<Self, String> {
        let digits = text.strip_prefix("sha256:").ok_or_else(|| {
            format!("{text:?} is not a hash: write sha256: and 64 hex digits (roster auth token prints the line)")
        })?;
        if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{text:?}: sha256: takes 64 hex digits, the SHA-256 hash of the token"));
        }
        let mut hash = [0; 32];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Self(hash))
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex(&self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}…", self.fingerprint())
    }
}

/// The token-file line that grants `token` the role `role` with `binding` (see the module's documentation).
pub fn entry_line(role: Role, binding: Option<&str>, token: &str) -> String {
    let who = match binding {
        Some(b) => format!("{role}:{b}"),
        None => role.to_string(),
    };
    format!("{who} {}", TokenHash::of(token))
}

/// A token file that cannot be used: which file, which line, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read the token file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A line is malformed.
    #[error("token file {path}, line {line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong, and how to write it.
        reason: String,
    },
}

/// The credentials a token file grants: each hash with the principal it authenticates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenTable {
    entries: Vec<(TokenHash, Principal)>,
}

impl TokenTable {
    /// Parses the text of the token file at `path` (named in errors).
    ///
    /// # Errors
    /// [`TokenFileError::Line`] naming the first bad line: not two fields, an unknown role, a malformed binding or
    /// hash, or a hash listed twice.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TokenFileError> {
        let mut entries: Vec<(TokenHash, Principal)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let bad = |reason: String| TokenFileError::Line { path: path.to_owned(), line: n + 1, reason };
            let line = line.split_once('#').map_or(line, |(before, _)| before).trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [who, hash] = fields[..] else {
                return Err(bad(format!(
                    "{} fields; write ROLE[:BINDING] sha256:HEX (e.g. \"reader sha256:…\")",
                    fields.len()
                )));
            };
            let (role, binding) = match who.split_once(':') {
                Some((role, binding)) => (role, Some(binding)),
                None => (who, None),
            };
            let role = Role::parse_field("role", role).map_err(|e| bad(e.to_string()))?;
            let hash = TokenHash::parse(hash).map_err(bad)?;
            let principal = match (role, binding) {
                // An operator or reader without a name is named by its token's fingerprint in the logs.
                (Role::Operator | Role::Reader, None) => {
                    Principal::bind(role, Some(&format!("token {}", hash.fingerprint())), "binding")
                }
                _ => Principal::bind(role, binding, "binding"),
            }
            .map_err(|e| bad(e.to_string()))?;
            if entries.iter().any(|(h, _)| *h == hash) {
                return Err(bad(format!("{hash:?} is listed twice; one token has one role")));
            }
            entries.push((hash, principal));
        }
        Ok(Self { entries })
    }

    /// Reads and parses the token file at `path`.
    ///
    /// # Errors
    /// See [`TokenFileError`].
    pub fn read(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TokenFileError::Read { path: path.to_owned(), reason: chain(&e).to_string() })?;
        Self::parse(path, &text)
    }

    /// The principal `token` authenticates, if the file lists its hash. Every entry is compared, each in constant
    /// time, so the time taken says nothing about which entry (if any) matched, or how closely.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        let presented = TokenHash::of(token);
        let mut found = None;
        for (hash, principal) in &self.entries {
            if bool::from(hash.0.ct_eq(&presented.0)) {
                found = Some(principal);
            }
        }
        found
    }

    /// How many credentials the file grants.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file grants none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A token file kept current: read at start (a bad file is a start error), then checked every
/// [`TOKEN_FILE_CHECK`] by [`TokenFile::watch`]. A changed file that parses replaces the table at once (a removed
/// token stops working on its next call); one that does not is logged with the line and the reason, and the
/// table in force stays.
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
    current: Arc<RwLock<Loaded>>,
}

#[derive(Debug)]
struct Loaded {
    text: Option<String>,
    table: Arc<TokenTable>,
}

impl TokenFile {
    /// Reads the token file at `path`.
    ///
    /// # Errors
    /// See [`TokenFileError`].
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path = path.into();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| TokenFileError::Read { path: path.clone(), reason: chain(&e).to_string() })?;
        let table = Arc::new(TokenTable::parse(&path, &text)?);
        Ok(Self { path, current: Arc::new(RwLock::new(Loaded { text: Some(text), table })) })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table in force.
    pub fn table(&self) -> Arc<TokenTable> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).table)
    }

    /// Reads the file again; if its text changed, parses it and puts it in force, or logs why not and keeps the
    /// table in force. Returns whether a new table is in force.
    pub fn reload(&self) -> bool {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if current.text.take().is_some() {
                    warn!(file = %self.path.display(), error = %chain(&e), "cannot read the token file; the tokens read before stay in force");
                }
                return false;
            }
        };
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.text.as_deref() == Some(text.as_str()) {
            return false;
        }
        let parsed = TokenTable::parse(&self.path, &text);
        current.text = Some(text);
        match parsed {
            Ok(table) => {
                info!(file = %self.path.display(), credentials = table.len(), "token file reloaded");
                current.table = Arc::new(table);
                true
            }
            Err(e) => {
                warn!(error = %e, "the token file changed but cannot be used; the tokens read before stay in force");
                false
            }
        }
    }

    /// Checks the file every [`TOKEN_FILE_CHECK`] until `stop` is cancelled.
    pub async fn watch(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TOKEN_FILE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let file = self.clone();
            // File reads block; the check is tiny, but it does not run on the runtime's worker threads.
            let _ = tokio::task::spawn_blocking(move || file.reload()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ProducerScope;

    fn path() -> &'static Path {
        Path::new("/etc/roster/tokens")
    }

    #[test]
    fn a_token_authenticates_as_its_line_and_nothing_else_does() {
        let (ops, coll, prod) = (new_token(), new_token(), new_token());
        assert!(ops.starts_with(TOKEN_PREFIX) && ops.len() == TOKEN_PREFIX.len() + 64);
        let id = uuid::Uuid::from_u128(9);
        let text = format!(
            "# tokens\n{}\n\n{}   # the collector\n{}\n",
            entry_line(Role::Operator, Some("alice"), &ops),
            entry_line(Role::Collector, Some(&id.to_string()), &coll),
            entry_line(Role::Producer, Some("0b9d*"), &prod),
        );
        let table = TokenTable::parse(path(), &text).unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.authenticate(&ops), Some(&Principal::Operator { name: "alice".into() }));
        assert_eq!(table.authenticate(&coll), Some(&Principal::Collector(crate::domain::CollectorId(id))));
        assert_eq!(table.authenticate(&prod), Some(&Principal::Producer(ProducerScope::Prefix("0b9d".into()))));
        assert_eq!(table.authenticate(&new_token()), None);
        assert_eq!(table.authenticate(""), None);
        assert!(!text.contains(&ops), "the file holds hashes, never tokens");
    }

    #[test]
    fn an_unnamed_operator_is_named_by_its_fingerprint() {
        let token = new_token();
        let table = TokenTable::parse(path(), &entry_line(Role::Reader, None, &token)).unwrap();
        let name = format!("token {}", TokenHash::of(&token).fingerprint());
        assert_eq!(table.authenticate(&token), Some(&Principal::Reader { name }));
    }

    #[test]
    fn a_bad_line_is_named_with_the_file_and_the_reason() {
        let good = entry_line(Role::Reader, None, "t");
        let cases = [
            ("admin sha256:00", "line 1: role: \"admin\" is not a role"),
            ("reader", "line 1: 1 fields"),
            ("reader sha256:abc", "line 1: \"sha256:abc\": sha256: takes 64 hex digits"),
            ("reader 5e88489", "is not a hash"),
            (&format!("collector sha256:{}", "0".repeat(64)), "collector id"),
            (&format!("{good}\n{good}"), "line 2: sha256:"),
            (&format!("# ok\n{good}\nproducer:nope sha256:{}", "0".repeat(64)), "line 3: binding"),
        ];
        for (text, expected) in cases {
            let e = TokenTable::parse(path(), text).unwrap_err().to_string();
            assert!(e.starts_with("token file /etc/roster/tokens, line "), "{e}");
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_reload_takes_a_good_file_and_keeps_the_old_table_over_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let file_path = dir.path().join("tokens");
        let (old, new) = (new_token(), new_token());
        std::fs::write(&file_path, entry_line(Role::Reader, None, &old)).unwrap();
        let file = TokenFile::load(&file_path).unwrap();
        assert!(file.table().authenticate(&old).is_some());
        assert!(!file.reload(), "unchanged");

        std::fs::write(&file_path, "reader sha256:nothex\n").unwrap();
        assert!(!file.reload());
        assert!(file.table().authenticate(&old).is_some(), "a bad file leaves the old one in force");

        std::fs::write(&file_path, entry_line(Role::Reader, None, &new)).unwrap();
        assert!(file.reload());
        assert!(file.table().authenticate(&old).is_none(), "a removed token stops working");
        assert!(file.table().authenticate(&new).is_some());

        std::fs::remove_file(&file_path).unwrap();
        assert!(!file.reload());
        assert!(file.table().authenticate(&new).is_some(), "a missing file leaves the old one in force");
        let missing = TokenFile::load(dir.path().join("none")).unwrap_err().to_string();
        assert!(missing.starts_with("cannot read the token file ") && missing.contains("none"), "{missing}");
    }
}
