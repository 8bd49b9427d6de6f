//! Where a run directory's bytes live: a local directory or an object store (`s3://`, and `gs://`,
//! `az://` behind the `gcp`/`azure` features), behind one API on the `object_store` crate, so the
//! pipeline, `sql` and the trainer read and write both the same way.
//!
//! Credentials and endpoints come from the environment only (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, …), never from a config
//! file, and no message of this module prints them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, WriteMultipart};
use url::Url;

use crate::RunDir;

/// A storage failure, naming the location and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct StoreError {
    pub location: String,
    pub message: String,
}

impl StoreError {
    fn new(location: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self { location: location.to_string(), message: message.to_string() }
    }
}

/// An object under the run directory: its path relative to the run's root (`tables/…`), its size
/// and when it was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub path: String,
    pub bytes: u64,
    pub modified: std::time::SystemTime,
}

/// The store a run directory lives in, and the run's place in it.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The store's root as DataFusion's object-store registry knows it (`s3://bucket`, `file:///`).
    base: Url,
    /// The run's key prefix in the store.
    prefix: Key,
    /// The run's directory, when it is local.
    local: Option<PathBuf>,
    /// The location as given (for messages).
    location: String,
}

/// Whether `location` names an object store rather than a local path.
pub fn is_url(location: &str) -> bool {
    location.contains("://")
}

impl Storage {
    /// The storage of a run directory (or any location): a local path (created if missing) or an
    /// `s3://bucket/prefix` URL configured from the environment. Nothing is contacted yet; see
    /// [`Storage::check_writable`] and [`Storage::check_readable`].
    pub fn open(location: &str) -> Result<Self, StoreError> {
        if !is_url(location) || location.starts_with("file://") {
            let path = match location.strip_prefix("file://") {
                Some(p) => PathBuf::from(p),
                None => PathBuf::from(location),
            };
            return Self::local(&path, location);
        }
        let url = Url::parse(location).map_err(|e| StoreError::new(location, format!("not a URL: {e}")))?;
        let bucket = url.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(StoreError::new(location, "no bucket in the URL (expected s3://bucket/prefix)"));
        }
        let base = Url::parse(&format!("{}://{bucket}", url.scheme())).expect("scheme and host form a URL");
        let prefix = Key::from_url_path(url.path()).map_err(|e| StoreError::new(location, e))?;
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(base.as_str())
                    .with_retry(retry())
                    .build()
                    .map_err(|e| StoreError::new(location, e))?,
            ),
            #[cfg(feature = "gcp")]
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(base.as_str())
                    .with_retry(retry())
                    .build()
                    .map_err(|e| StoreError::new(location, e))?,
            ),
            #[cfg(feature = "azure")]
            "az" | "abfs" | "abfss" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(base.as_str())
                    .with_retry(retry())
                    .build()
                    .map_err(|e| StoreError::new(location, e))?,
            ),
            other => {
                return Err(StoreError::new(
                    location,
                    format!(
                        "`{other}://` is not a store this build reads; s3:// always, gs:// and az:// with the `gcp` / `azure` features"
                    ),
                ));
            }
        };
        Ok(Self { store, base, prefix, local: None, location: location.to_string() })
    }

    fn local(path: &Path, location: &str) -> Result<Self, StoreError> {
        let absolute = normalized(&std::path::absolute(path).map_err(|e| StoreError::new(location, e))?);
        let prefix = Key::from_absolute_path(&absolute).map_err(|e| StoreError::new(location, e))?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new()),
            base: Url::parse("file:///").expect("a URL"),
            prefix,
            local: Some(absolute),
            location: location.to_string(),
        })
    }

    /// The run directory's layout, rooted where [`Storage::relative`] expects it.
    pub fn run_dir(&self) -> RunDir {
        match &self.local {
            Some(root) => RunDir::new(root),
            None => RunDir::new(&self.location),
        }
    }

    /// The location as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The run's local directory, when the run is local.
    pub fn local_root(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    /// The store, for DataFusion's registry under [`Storage::base_url`].
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The key of `path` (relative to the run's root, `/`-separated).
    pub fn key(&self, path: &str) -> Key {
        path.split('/').filter(|s| !s.is_empty()).fold(self.prefix.clone(), |k, part| k.clone().join(part))
    }

    /// The URL of `path`, as DataFusion reads it.
    pub fn url(&self, path: &str) -> String {
        let key = absolute(&self.key(path));
        format!("{}://{}{key}", self.base.scheme(), self.base.host_str().unwrap_or_default())
    }

    /// `path` for messages: the location it is read from, never a credential.
    pub fn display(&self, path: &str) -> String {
        match &self.local {
            Some(root) => root.join(path).display().to_string(),
            None => self.url(path),
        }
    }

    fn error(&self, path: &str, doing: &str, e: object_store::Error) -> StoreError {
        StoreError::new(self.display(path), format!("{doing}: {}", describe(&e)))
    }

    /// Checks, before any work, that the location can be listed: the bucket exists, the
    /// credentials are accepted and the endpoint answers.
    pub async fn check_readable(&self) -> Result<(), StoreError> {
        self.store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map(|_| ())
            .map_err(|e| StoreError::new(&self.location, format!("cannot list it: {}", describe(&e))))
    }

    /// [`Storage::check_readable`], and that the store honours create-only writes
    /// (`If-None-Match: *`), on which the commit protocol rests: a probe object is created twice
    /// (the second must be refused) and deleted.
    pub async fn check_writable(&self, attempt: &str) -> Result<(), StoreError> {
        if let Some(root) = &self.local {
            // A local filesystem creates exclusively (`link`); only the directory must be there.
            return std::fs::create_dir_all(root).map_err(|e| StoreError::new(root.display(), e));
        }
        self.check_readable().await?;
        let probe = format!("_probe/{attempt}");
        let refused = |m: &str| StoreError::new(&self.location, m);
        if !self.create(&probe, Bytes::from_static(b"probe")).await? {
            return Err(refused("a fresh probe object already exists"));
        }
        let second = self.create(&probe, Bytes::from_static(b"probe")).await?;
        self.delete(&probe).await?;
        if second {
            return Err(refused(
                "the store accepted a second create-only write of one key: it ignores If-None-Match, \
                 and shards could overwrite each other's commits",
            ));
        }
        Ok(())
    }

    /// The object at `path`, or `None` when there is none.
    pub async fn read(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(&self.key(path)).await {
            Ok(found) => found.bytes().await.map(Some).map_err(|e| self.error(path, "cannot read it", e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(path, "cannot read it", e)),
        }
    }

    /// Writes `bytes` at `path`, replacing what is there (one object appears whole or not at all).
    pub async fn write(&self, path: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&self.key(path), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(path, "cannot write it", e))
    }

    /// Creates `path` only if no object is there: `false` when one already was (another attempt
    /// got there first).
    pub async fn create(&self, path: &str, bytes: Bytes) -> Result<bool, StoreError> {
        for attempt in 0..5u32 {
            let options = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&self.key(path), PutPayload::from_bytes(bytes.clone()), options).await {
                Ok(_) => return Ok(true),
                // object_store reports S3's 409 (two conditional writes of one key in flight) as
                // "already exists" too: it is one only when the object is there.
                Err(object_store::Error::AlreadyExists { .. }) => match self.store.head(&self.key(path)).await {
                    Ok(_) => return Ok(false),
                    Err(object_store::Error::NotFound { .. }) => {
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    Err(e) => return Err(self.error(path, "cannot check it", e)),
                },
                Err(e) => return Err(self.error(path, "cannot create it", e)),
            }
        }
        Err(StoreError::new(self.display(path), "create-only writes kept conflicting and nothing was written"))
    }

    /// Moves the finished local file `file` to `path`: a rename for a local run, an upload
    /// (multipart when large) for an object store, after which `file` is removed.
    pub async fn upload(&self, file: &Path, path: &str) -> Result<(), StoreError> {
        if let Some(root) = &self.local {
            let target = root.join(path);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::new(dir.display(), e))?;
            }
            return std::fs::rename(file, &target).map_err(|e| StoreError::new(target.display(), e));
        }
        let size = std::fs::metadata(file).map_err(|e| StoreError::new(file.display(), e))?.len();
        if size <= MULTIPART_FROM {
            let bytes = std::fs::read(file).map_err(|e| StoreError::new(file.display(), e))?;
            self.write(path, Bytes::from(bytes)).await?;
        } else {
            let upload =
                self.store.put_multipart(&self.key(path)).await.map_err(|e| self.error(path, "cannot upload", e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut reader = std::fs::File::open(file).map_err(|e| StoreError::new(file.display(), e))?;
            let mut chunk = vec![0u8; PART_BYTES];
            loop {
                let n = std::io::Read::read(&mut reader, &mut chunk).map_err(|e| StoreError::new(file.display(), e))?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(4).await.map_err(|e| self.error(path, "cannot upload", e))?;
                writer.write(&chunk[..n]);
            }
            writer.finish().await.map_err(|e| self.error(path, "cannot upload", e))?;
        }
        std::fs::remove_file(file).map_err(|e| StoreError::new(file.display(), e))
    }

    /// Every object below `dir` (relative to the run's root), in key order.
    pub async fn list(&self, dir: &str) -> Result<Vec<Object>, StoreError> {
        let prefix = self.key(dir);
        let strip = absolute(&self.prefix);
        let mut found: Vec<Object> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| Object {
                path: absolute(&meta.location)
                    .strip_prefix(&strip)
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                bytes: meta.size,
                modified: meta.last_modified.into(),
            })
            .try_collect()
            .await
            .map_err(|e| self.error(dir, "cannot list it", e))?;
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// The names directly below `dir` (objects and "directories").
    pub async fn children(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.key(dir)))
            .await
            .map_err(|e| self.error(dir, "cannot list it", e))?;
        let mut names: Vec<String> = listed
            .objects
            .iter()
            .map(|m| &m.location)
            .chain(&listed.common_prefixes)
            .filter_map(|k| k.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.key(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(path, "cannot delete it", e)),
        }
    }

    /// `path` (a [`RunDir`] location) relative to the run's root, `/`-separated.
    pub fn relative(&self, run: &RunDir, path: &Path) -> String {
        let rel = path.strip_prefix(run.root()).unwrap_or(path);
        rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }
}

/// Objects up to this size are uploaded with one request.
const MULTIPART_FROM: u64 = 16 << 20;
/// Parts of a multipart upload (S3 wants at least 5 MiB but the last).
const PART_BYTES: usize = 8 << 20;

/// Requests are retried with backoff, but a wrong endpoint or bucket must fail in seconds, not in
/// object_store's default three minutes.
fn retry() -> RetryConfig {
    RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(20), ..Default::default() }
}

/// `path` without `.` and `..` (which object_store keys cannot hold), without touching the disk:
/// the run directory may not exist yet.
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn absolute(key: &Key) -> String {
    format!("/{}", key.as_ref())
}

/// An object_store error in one line: what it most likely means, then the request and the
/// server's error code. The server's XML body is left out: S3 echoes the string it signed and the
/// access key id there.
fn describe(e: &object_store::Error) -> String {
    let text = e.to_string().replace('\n', " ");
    let code = text.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map(|(c, _)| c.to_string());
    let request = text.split_once("<?xml").map_or(text.as_str(), |(head, _)| head).trim_end_matches([' ', ':']);
    let refused = ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"];
    let meaning = match code.as_deref() {
        Some("NoSuchBucket") => "the bucket does not exist",
        Some(c) if refused.contains(&c) => {
            "the credentials were refused; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        }
        _ if matches!(
            e,
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
        ) || text.contains("403 Forbidden") =>
        {
            "the credentials were refused; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        }
        _ if matches!(e, object_store::Error::NotFound { .. }) => "not found",
        _ if text.contains("error sending request") => "the endpoint does not answer; check AWS_ENDPOINT",
        _ => "",
    };
    let code = code.map(|c| format!(" [{c}]")).unwrap_or_default();
    if meaning.is_empty() { format!("{request}{code}") } else { format!("{meaning} ({request}{code})") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_urls_of_a_bucket_prefix() {
        // SAFETY of the test: no endpoint is contacted; the builder only needs a region.
        let s = Storage::open("s3://bucket/runs/one").unwrap();
        assert_eq!(
            s.key("tables/triples/part-000-00000.x.parquet").as_ref(),
            "runs/one/tables/triples/part-000-00000.x.parquet"
        );
        assert_eq!(s.url("manifest.json"), "s3://bucket/runs/one/manifest.json");
        assert_eq!(s.base_url().as_str(), "s3://bucket");
        assert!(s.local_root().is_none());
    }

    #[test]
    fn unknown_schemes_and_missing_buckets_are_named() {
        let e = Storage::open("ftp://host/x").unwrap_err().to_string();
        assert!(e.starts_with("ftp://host/x: `ftp://` is not a store"), "{e}");
        let e = Storage::open("s3:///x").unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }

    #[test]
    fn local_paths_are_made_absolute_and_normal() {
        let s = Storage::open("/r/tests/../data").unwrap();
        assert_eq!(s.local_root(), Some(Path::new("/r/data")));
        assert_eq!(s.url("x.parquet"), "file:///r/data/x.parquet");
    }

    #[tokio::test]
    async fn a_local_run_round_trips_and_creates_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(&dir.path().join("run").display().to_string()).unwrap();
        s.check_writable("a1").await.unwrap();
        assert!(s.create("commits/x.json", Bytes::from_static(b"1")).await.unwrap());
        assert!(!s.create("commits/x.json", Bytes::from_static(b"2")).await.unwrap());
        assert_eq!(s.read("commits/x.json").await.unwrap().unwrap(), Bytes::from_static(b"1"));
        assert_eq!(s.read("commits/y.json").await.unwrap(), None);
        let spill = dir.path().join("spill");
        std::fs::write(&spill, b"rows").unwrap();
        s.upload(&spill, "tables/t/part.parquet").await.unwrap();
        let listed: Vec<String> = s.list("").await.unwrap().into_iter().map(|o| o.path).collect();
        assert_eq!(listed, ["commits/x.json", "tables/t/part.parquet"]);
        assert_eq!(s.children("").await.unwrap(), ["commits", "tables"]);
        assert_eq!(
            s.url("tables/t/part.parquet"),
            format!("file://{}/run/tables/t/part.parquet", dir.path().display())
        );
    }
}
