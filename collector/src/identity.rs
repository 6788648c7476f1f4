//! The collector's stable identity: a UUID made on first start and kept in the data directory, so the server
//! keeps its assignment (and generations) across restarts.

use std::{fs, io, path::Path, str::FromStr};

use roster::domain::CollectorId;

/// File holding the id, inside the data directory.
const ID_FILE: &str = "collector-id";

/// Why the identity cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the file failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The file does not hold a usable collector id (a UUID other than the nil one).
    #[error(
        "{path} does not hold a collector id: {problem}. Fix it, pass --id, or delete it to make a new id (the server then sees a new collector)"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong with what it holds.
        problem: String,
    },
}

/// The id: `overridden` if given, else the one in `data_dir`, else a new one (written there).
///
/// # Errors
/// When the file cannot be read or written, or holds something other than a UUID (or the nil UUID).
pub fn load_or_create(data_dir: &Path, overridden: Option<CollectorId>) -> Result<CollectorId, IdentityError> {
    if let Some(id) = overridden {
        return Ok(id);
    }
    let path = data_dir.join(ID_FILE);
    let io_error = |source| IdentityError::Io { path: path.display().to_string(), source };
    match fs::read_to_string(&path) {
        Ok(content) => CollectorId::from_str(content.trim())
            .map_err(|e| IdentityError::Corrupt { path: path.display().to_string(), problem: e.0 }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = CollectorId::new_random();
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, format!("{id}\n")).map_err(io_error)?;
            fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_error)?;
            fs::rename(&tmp, &path).map_err(io_error)?;
            Ok(id)
        }
        Err(e) => Err(io_error(e)),
    }
}
