//! The response cache: durable across reopening, keyed by every part of a request.

use lrem_pipeline::client::cache::{Cache, Entry, key};

fn entry(text: &str) -> Entry {
    Entry {
        kind: "chat".into(),
        model: "m".into(),
        request: serde_json::json!({"q": text}),
        response: serde_json::json!({"a": text}),
        created_ms: 1,
    }
}

#[tokio::test]
async fn survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let k = key("chat", "m", &serde_json::json!({"q": 1}));
    {
        let cache = Cache::open(&path).unwrap();
        assert_eq!(cache.get(&k).unwrap(), None);
        cache.put(k, &entry("x")).await.unwrap();
    }
    // Dropping the cache releases the file at once (its writer thread is joined): reopening
    // right away never meets a lock, however often.
    for _ in 0..200 {
        let cache = Cache::open(&path).unwrap();
        assert_eq!(cache.get(&k).unwrap(), Some(entry("x")));
        cache.put(k, &entry("x")).await.unwrap();
    }
    let cache = Cache::open(&path).unwrap();
    assert_eq!(cache.entries().unwrap().len(), 1);
}

#[test]
fn key_depends_on_every_part() {
    let body = serde_json::json!({"temperature": 0.0, "messages": ["a"]});
    let base = key("chat", "m", &body);
    assert_ne!(base, key("embeddings", "m", &body));
    assert_ne!(base, key("chat", "m2", &body));
    assert_ne!(base, key("chat", "m", &serde_json::json!({"temperature": 0.7, "messages": ["a"]})));
    // Field order in the source does not matter: the body is canonical.
    assert_eq!(base, key("chat", "m", &serde_json::json!({"messages": ["a"], "temperature": 0.0})));
}
