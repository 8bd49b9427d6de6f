//! The response cache: request content → response, in a crash-safe embedded store (redb).
//!
//! The key is XXH3-128 of (endpoint kind, model, full request body after defaults), so a request
//! that differs in anything that can change the answer (prompt, temperature, max_tokens, schema)
//! misses, and the same request from a rerun or a resumed crash hits. The endpoint URL and API key
//! are not part of the key: the same model behind another URL gives the same answers.
//!
//! Writes are group-committed by one writer thread (each commit is durable, and a caller gets its
//! response only after the commit that holds it), so thousands of requests in flight cost one
//! fsync per batch rather than one each.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::Error;

const RESPONSES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("responses");

/// One cached exchange, kept whole so the cache can be inspected with SQL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub kind: String,
    pub model: String,
    pub request: serde_json::Value,
    pub response: serde_json::Value,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
}

pub type Key = [u8; 16];

pub fn key(kind: &str, model: &str, body: &serde_json::Value) -> Key {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [kind.as_bytes(), b"\0", model.as_bytes(), b"\0"] {
        h.update(part);
    }
    h.update(&serde_json::to_vec(&canonical(body)).expect("JSON value serialises"));
    h.digest128().to_be_bytes()
}

/// The same value with object keys sorted at every level, whatever map type serde_json was built
/// with (a dependency enabling `preserve_order` must not change keys).
fn canonical(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

type Job = (Key, Vec<u8>, oneshot::Sender<Result<(), String>>);

pub struct Cache {
    db: Arc<Database>,
    path: PathBuf,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Job>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

/// Closing the cache waits for its writer thread, which holds the database too: otherwise the
/// file stays locked for a moment after the cache is gone, and a run that opens it right away
/// (a rerun, the next test) fails with "Database already open".
impl Drop for Cache {
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Cache {
    pub fn open(path: &Path) -> Result<Arc<Self>, Error> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let db = Database::create(path).map_err(|e| Error::Cache(format!("{}: {e}", path.display())))?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("response-cache".into())
            .spawn(move || write_loop(&writer_db, rx))
            .map_err(|e| Error::Cache(e.to_string()))?;
        Ok(Arc::new(Self { db, path: path.to_owned(), writer: Some(tx), writer_thread: Some(thread) }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &Key) -> Result<Option<Entry>, Error> {
        let txn = self.db.begin_read().map_err(cache_err)?;
        let table = match txn.open_table(RESPONSES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(cache_err(e)),
        };
        let Some(value) = table.get(key.as_slice()).map_err(cache_err)? else { return Ok(None) };
        // An entry that no longer parses is treated as absent (and overwritten by the next put).
        Ok(serde_json::from_slice(value.value()).ok())
    }

    /// Stores an entry; returns once it is durable.
    pub async fn put(&self, key: Key, entry: &Entry) -> Result<(), Error> {
        let bytes = serde_json::to_vec(entry).map_err(|e| Error::Internal(e.to_string()))?;
        let (ack, done) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or_else(|| Error::Cache("cache writer stopped".into()))?;
        writer.send((key, bytes, ack)).map_err(|_| Error::Cache("cache writer stopped".into()))?;
        done.await.map_err(|_| Error::Cache("cache writer stopped".into()))?.map_err(Error::Cache)
    }

    /// Every entry, for SQL inspection (`cache` table).
    pub fn entries(&self) -> Result<Vec<(Key, Entry)>, Error> {
        let txn = self.db.begin_read().map_err(cache_err)?;
        let table = match txn.open_table(RESPONSES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(cache_err(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(cache_err)? {
            let (k, v) = row.map_err(cache_err)?;
            let mut key = [0u8; 16];
            key.copy_from_slice(k.value());
            if let Ok(entry) = serde_json::from_slice(v.value()) {
                out.push((key, entry));
            }
        }
        Ok(out)
    }
}

fn write_loop(db: &Database, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = commit(db, &batch).map_err(|e| e.to_string());
        for (_, _, ack) in batch {
            let _ = ack.send(result.clone());
        }
    }
}

fn commit(db: &Database, batch: &[Job]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(RESPONSES)?;
        for (key, bytes, _) in batch {
            table.insert(key.as_slice(), bytes.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn cache_err(e: impl Into<redb::Error>) -> Error {
    Error::Cache(e.into().to_string())
}
