//! Local copies of what lives on an object store and must be read as a local file: the inputs
//! (validated whole, then read by every stage) and the response cache (a database file).

use std::path::PathBuf;

use lrem_schemas::store::Storage;

use crate::Error;

/// Where this node keeps local copies for `url`: `$LREM_CACHE_DIR` (default
/// `~/.cache/lrem-pipeline`), then the URL's scheme, bucket and key.
pub fn dir_for(url: &str) -> PathBuf {
    let home = std::env::var_os("LREM_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache").join("lrem-pipeline")
    });
    home.join(url.replace("://", "/").trim_end_matches('/'))
}

/// An input on an object store (one file, or a directory of Parquet parts), copied to this node's
/// cache once: validation reads it whole, and every stage reads it again. A copy of the same size
/// is reused.
pub async fn fetch(url: &str) -> Result<PathBuf, Error> {
    let storage = Storage::open(url)?;
    let target = dir_for(url);
    let objects = match storage.read("").await? {
        Some(bytes) => {
            let size = bytes.len() as u64;
            vec![(target.clone(), Some(bytes), size)]
        }
        None => storage.list("").await?.into_iter().map(|o| (target.join(&o.path), None, o.bytes)).collect(),
    };
    if objects.is_empty() {
        return Err(Error::Usage(format!("{url}: no such object or prefix")));
    }
    for (local, bytes, size) in objects {
        if std::fs::metadata(&local).is_ok_and(|m| m.len() == size) {
            continue;
        }
        let bytes = match bytes {
            Some(b) => b,
            None => {
                let rel = local.strip_prefix(&target).expect("below the target").to_string_lossy().into_owned();
                storage.read(&rel).await?.ok_or_else(|| Error::Usage(format!("{url}/{rel}: gone while fetched")))?
            }
        };
        let dir = local.parent().expect("a directory");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let temp = dir.join(format!(".{}.tmp", local.file_name().unwrap_or_default().to_string_lossy()));
        std::fs::write(&temp, &bytes).map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, &local).map_err(|e| Error::io(&local, e))?;
    }
    Ok(target)
}
