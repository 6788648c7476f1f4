//! [`CallCredentials`]: the bearer token a client sends with every call, read from a file and re-read when the file
//! changes (as client-go's cached file token source does), so a rotated token is picked up without a restart.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use tracing::warn;

use super::tokens::{TOKEN_FILE_CHECK, TokenFileError};
use crate::error_chain::chain;

/// A channel whose every call carries the caller's [`CallCredentials`]: the one client path of the library's
/// clients and the feed follower.
pub type AuthChannel = InterceptedService<Channel, CallCredentials>;

/// What a client sends to authenticate each call: nothing, or a bearer token from a file.
#[derive(Debug, Clone, Default)]
pub struct CallCredentials {
    token: Option<Arc<TokenSource>>,
}

#[derive(Debug)]
struct TokenSource {
    path: PathBuf,
    state: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    header: AsciiMetadataValue,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl CallCredentials {
    /// No credentials: for a server with authentication off.
    pub fn none() -> Self {
        Self::default()
    }

    /// The token in the file at `path` (the whole file, surrounding whitespace ignored), sent as
    /// `authorization: Bearer <token>`. The file is checked at most once per
    /// [`TOKEN_FILE_CHECK`](super::tokens::TOKEN_FILE_CHECK) and read again when it was modified; a file that
    /// cannot be read then is logged and the token read before is kept.
    ///
    /// # Errors
    /// A [`TokenFileError`] naming the file when it cannot be read or holds no usable token.
    pub fn from_token_file(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path = path.into();
        let (header, modified) = read_token(&path)?;
        let state = Mutex::new(Current { header, modified, checked: Instant::now() });
        Ok(Self { token: Some(Arc::new(TokenSource { path, state })) })
    }

    /// The `authorization` value to send now, if any.
    fn header(&self) -> Option<AsciiMetadataValue> {
        let source = self.token.as_ref()?;
        let mut current = source.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.checked.elapsed() >= TOKEN_FILE_CHECK {
            current.checked = Instant::now();
            let modified = std::fs::metadata(&source.path).and_then(|m| m.modified()).ok();
            if modified != current.modified {
                match read_token(&source.path) {
                    Ok((header, modified)) => {
                        current.header = header;
                        current.modified = modified;
                    }
                    Err(e) => warn!(error = %e, "cannot read the token file again; sending the token read before"),
                }
            }
        }
        Some(current.header.clone())
    }
}

/// The `authorization` header value for the token in `path`, and the file's modification time.
fn read_token(path: &Path) -> Result<(AsciiMetadataValue, Option<SystemTime>), TokenFileError> {
    let read = |e: std::io::Error| TokenFileError::Read { path: path.to_owned(), reason: chain(&e).to_string() };
    let modified = std::fs::metadata(path).map_err(read)?.modified().ok();
    let text = std::fs::read_to_string(path).map_err(read)?;
    let token = text.trim();
    let bad = |reason: &str| TokenFileError::Line { path: path.to_owned(), line: 1, reason: reason.to_owned() };
    if token.is_empty() {
        return Err(bad("the file is empty; put the token roster auth token printed in it"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("a token is one word of visible ASCII; the file holds something else"));
    }
    let mut header: AsciiMetadataValue =
        MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| bad("not a valid header value"))?;
    // Never printed (Debug shows "Sensitive") and never put in HTTP/2's header compression table.
    header.set_sensitive(true);
    Ok((header, modified))
}

impl Interceptor for CallCredentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = self.header() {
            request.metadata_mut().insert("authorization", header);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(credentials: &mut CallCredentials) -> Option<String> {
        let request = credentials.call(Request::new(())).unwrap();
        request.metadata().get("authorization").map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn the_token_is_sent_and_re_read_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "roster_first\n").unwrap();
        let mut credentials = CallCredentials::from_token_file(&path).unwrap();
        assert_eq!(sent(&mut credentials).as_deref(), Some("Bearer roster_first"));
        assert!(!format!("{credentials:?}").contains("roster_first"), "a debug print never shows the token");

        std::fs::write(&path, "roster_second").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        credentials.token.as_ref().unwrap().state.lock().unwrap().checked -= TOKEN_FILE_CHECK;
        assert_eq!(sent(&mut credentials).as_deref(), Some("Bearer roster_second"));

        std::fs::remove_file(&path).unwrap();
        credentials.token.as_ref().unwrap().state.lock().unwrap().checked -= TOKEN_FILE_CHECK;
        assert_eq!(sent(&mut credentials).as_deref(), Some("Bearer roster_second"), "a vanished file keeps the token");
        assert_eq!(sent(&mut CallCredentials::none()), None);
    }

    #[test]
    fn an_unusable_token_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        for (text, expected) in [("", "is empty"), ("two words", "one word")] {
            std::fs::write(&path, text).unwrap();
            let e = CallCredentials::from_token_file(&path).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()) && e.contains(expected), "{e}");
        }
        let e = CallCredentials::from_token_file(dir.path().join("none")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the token file "), "{e}");
    }
}
