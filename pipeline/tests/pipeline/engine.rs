//! The whole DAG against the fault-injecting loopback endpoint, on a small generated world.

use std::path::{Path, PathBuf};

use crate::common::{self, Endpoint, Fault, World};
use lrem_pipeline::run::manifest::{Manifest, StageState};
use lrem_pipeline::run::{RunOptions, run};
use lrem_pipeline::sql::{Inspector, OutputFormat, render};
use lrem_pipeline::stages;

/// A copy of `config` with `from` replaced by `to`.
fn edited(config: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from));
    let path = config.with_extension(format!("{:x}.toml", xxhash_rust::xxh3::xxh3_64(to.as_bytes())));
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

fn quiet() -> RunOptions {
    RunOptions { quiet: true, ..RunOptions::default() }
}

async fn sql(run_dir: &Path, query: &str) -> String {
    let inspector = Inspector::open(run_dir).await.unwrap();
    render(&inspector.query(query).await.unwrap()[0], OutputFormat::Csv).unwrap()
}

async fn number(run_dir: &Path, query: &str) -> i64 {
    sql(run_dir, query).await.lines().nth(1).unwrap().parse().unwrap()
}

/// The first mined hard query texts (runs the DAG up to mining).
async fn hard_queries(world: &World, config: &Path, n: usize) -> Vec<String> {
    run(config, RunOptions { until: Some(stages::find("hard_queries").unwrap()), ..quiet() }).await.unwrap();
    let csv = sql(&world.run_dir(), &format!("select query from hard_queries order by query_id limit {n}")).await;
    let found: Vec<String> = csv.lines().skip(1).map(|l| l.trim_matches('"').to_string()).collect();
    assert_eq!(found.len(), n, "the small world mines at least {n} hard queries");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_dag_writes_valid_triples_and_reconciles() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let config = world.config(&endpoint.start().await, "");
    let (run_dir, manifest) = run(&config, quiet()).await.unwrap();
    for stage in stages::DAG {
        let record = &manifest.stages[stage.name()];
        assert_eq!(record.state, StageState::Done, "{}", stage.name());
        assert!(record.reconciles(), "{}: {record:?}", stage.name());
    }
    assert!(manifest.stages["hard_queries"].rows_out > 10, "{:?}", manifest.stages["hard_queries"]);
    assert!(number(&run_dir, "select count(*) from triples").await > 0);
    // Every table holds its schema and unique keys.
    for table in common::STAGE_TABLES {
        let spec = lrem_schemas::table(table).unwrap();
        lrem_schemas::validate(&run_dir.join("tables").join(table), &spec, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let orphans = "select count(*) from triples t left join items i on i.item_id = t.item_id where i.item_id is null";
    assert_eq!(number(&run_dir, orphans).await, 0);
    assert!(number(&run_dir, "select max(cardinality(keywords)) from cot").await <= 16);
    let splits = "select (select count(*) from triples_cold_start) + (select count(*) from triples_rl) - (select count(*) from triples)";
    assert_eq!(number(&run_dir, splits).await, 0);
    let shared = "select count(*) from triples_rl r join triples_cold_start c on c.query_id = r.query_id";
    assert_eq!(number(&run_dir, shared).await, 0, "a query is in one split only");
    assert_eq!(number(&run_dir, "select count(*) from failures").await, 0);
    // Gain is set ② minus set ①.
    let overlap = "select count(*) from gain g join retrieval_1 r on r.query_id = g.query_id and r.item_id = g.item_id";
    assert_eq!(number(&run_dir, overlap).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_from_scratch_is_served_by_the_cache() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let config = world.config(&endpoint.start().await, "");
    let (run_dir, _) = run(&config, quiet()).await.unwrap();
    let first = sql(&run_dir, "select * from triples order by query_id, item_id").await;
    let sent = endpoint.requests();
    assert!(sent > 0);
    // Unchanged: nothing to do.
    run(&config, quiet()).await.unwrap();
    assert_eq!(endpoint.requests(), sent);
    // Tables, their commits and the manifest (with its revisions) gone, cache kept: every request
    // is a cache hit.
    std::fs::remove_dir_all(run_dir.join("tables")).unwrap();
    std::fs::remove_dir_all(run_dir.join("commits")).unwrap();
    std::fs::remove_file(run_dir.join("manifest.json")).unwrap();
    std::fs::remove_dir_all(run_dir.join("manifests")).unwrap();
    let (_, manifest) = run(&config, quiet()).await.unwrap();
    assert_eq!(endpoint.requests(), sent, "a rerun re-sent requests");
    assert!(manifest.stages["reasoning"].usage["reasoner"]["cache_hits"].as_u64().unwrap() > 0);
    assert_eq!(sql(&run_dir, "select * from triples order by query_id, item_id").await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_stage_reruns_itself_and_below_only() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let base = endpoint.start().await;
    let (_, before) = run(&world.config(&base, ""), quiet()).await.unwrap();
    let chats = endpoint.log.lock().unwrap().by_path.get("chat").copied().unwrap_or(0);
    let (_, after) = run(&world.config(&base, "[stages.cot]\nmax_keywords = 2\n"), quiet()).await.unwrap();
    for stage in ["queries", "item_embeddings", "retrieval_1", "hard_queries", "reasoning", "keywords"] {
        assert_eq!(before.stages[stage].fingerprint, after.stages[stage].fingerprint, "{stage} must not rerun");
    }
    for stage in ["cot", "retrieval_2", "gain", "relevance", "triples"] {
        assert_ne!(before.stages[stage].fingerprint, after.stages[stage].fingerprint, "{stage} must rerun");
    }
    assert_eq!(
        endpoint.log.lock().unwrap().by_path.get("chat").copied().unwrap_or(0),
        chats,
        "no chat request above cot"
    );
    assert!(number(&world.run_dir(), "select max(cardinality(keywords)) from cot").await <= 2);
    // The first config's cot and below are named by markers no manifest records any more: gc
    // deletes those markers and their files, and the run reads the same.
    let triples = sql(&world.run_dir(), "select * from triples order by query_id, item_id").await;
    let storage = lrem_schemas::store::Storage::open(&world.run_dir().display().to_string()).unwrap();
    let gone = lrem_pipeline::gc::collect(&storage, &storage.run_dir(), std::time::Duration::ZERO).await.unwrap();
    assert!(gone.markers >= 5 && gone.deleted >= 5 && gone.kept > 0, "{gone:?}");
    assert_eq!(sql(&world.run_dir(), "select * from triples order by query_id, item_id").await, triples);
    assert!(number(&world.run_dir(), "select max(cardinality(keywords)) from cot").await <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_every_row_ends_correct() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let config = world.config(&endpoint.start().await, "");
    let queries = hard_queries(&world, &config, 8).await;
    let faults = [
        Fault::Status { code: 429, retry_after: Some(1) },
        Fault::Status { code: 429, retry_after: None },
        Fault::Status { code: 500, retry_after: None },
        Fault::Status { code: 503, retry_after: None },
        Fault::Slow(std::time::Duration::from_millis(1500)),
        Fault::ResetMidBody,
        Fault::InvalidJson,
        Fault::EmptyContent,
    ];
    for (query, fault) in queries.iter().zip(faults) {
        endpoint.rule(&format!("\\\"{query}\\\""), fault, 2);
    }
    let (run_dir, manifest) = run(&config, quiet()).await.unwrap();
    assert_eq!(
        number(&run_dir, "select count(*) from failures").await,
        0,
        "{}",
        sql(&run_dir, "select * from failures").await
    );
    let reasoning = &manifest.stages["reasoning"];
    assert_eq!(reasoning.rows_out, reasoning.rows_in);
    let usage = &reasoning.usage["reasoner"];
    assert!(usage["retries"].as_u64().unwrap() >= 16, "{usage}");
    assert!(usage["throttled"].as_u64().unwrap() >= 4, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_fail_for_good_land_in_failures_with_their_reason() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let config = world.config(&endpoint.start().await, "");
    let q = hard_queries(&world, &config, 4).await;
    let quoted = |s: &str| format!("\\\"{s}\\\"");
    endpoint.rule(&quoted(&q[0]), Fault::EmptyContent, 100);
    endpoint.rule(&quoted(&q[1]), Fault::Status { code: 500, retry_after: None }, 100);
    // Keyword replies for q[2] are prose, even after the repair prompt. (The keyword prompt
    // holds the reasoning, not the query: it is matched by the reasoning the endpoint wrote.)
    let keyword_prompt = |q: &str| format!("Text: {}", common::reasoning_for(q));
    endpoint.rule(&keyword_prompt(&q[2]), Fault::Content("I would say coffee is nice".into()), 100);
    // A truncated keyword list for q[3] is repaired by the second prompt.
    endpoint.rule(&keyword_prompt(&q[3]), Fault::Truncated("[\"coff".into()), 1);
    let (run_dir, manifest) = run(&config, quiet()).await.unwrap();
    let failures = sql(&run_dir, "select stage, error_kind, attempts from failures order by stage, error_kind").await;
    assert_eq!(
        failures,
        "stage,error_kind,attempts\nkeywords,unparsable_keywords,2\nreasoning,empty_content,4\nreasoning,http_500,4\n"
    );
    assert_eq!(manifest.stages["reasoning"].rows_failed, 2);
    assert_eq!(manifest.stages["keywords"].rows_failed, 1);
    for record in manifest.stages.values() {
        assert!(record.reconciles(), "{record:?}");
    }
    let repaired = format!(
        "select parse from keywords k join reasoning r on r.query_id = k.query_id where r.query = '{}'",
        q[3].replace('\'', "''")
    );
    assert_eq!(sql(&run_dir, &repaired).await, "parse\nrepaired\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_fail_before_any_work() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let base = endpoint.start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", listener.local_addr().unwrap())
    };
    let cases = [
        (world.config(&base, "[stages.cot]\nmax_keyword = 3\n"), "unknown field `max_keyword`"),
        (world.config(&base, "[stages.keywords]\nendpoint = \"extractor\"\n"), "define [endpoints.extractor]"),
        (edited(&world.config(&base, ""), "k = 20", "k = -5"), "-5"),
        (world.config(&closed, ""), "unreachable at"),
        (world.config(&base, ""), ""),
    ];
    for (config, expected) in cases.iter().take(4) {
        let err =
            run(config, quiet()).await.err().unwrap_or_else(|| panic!("{expected}: the run succeeded")).to_string();
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
        assert!(!world.run_dir().exists(), "{expected}: the run directory was written");
    }
    let wrong_model = std::fs::read_to_string(&cases[4].0).unwrap().replace("fake-chat", "qwen3-30b");
    let path = world.root.join("wrong-model.toml");
    std::fs::write(&path, wrong_model).unwrap();
    let err = run(&path, quiet()).await.err().unwrap().to_string();
    assert!(err.contains("model `qwen3-30b` is not served") && err.contains("fake-chat"), "{err}");
    assert!(!world.run_dir().exists());
    assert_eq!(endpoint.requests(), 0, "no model request before the checks pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_error_mid_run_stops_the_run_with_the_servers_message() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let config = world.config(&endpoint.start().await, "");
    let q = hard_queries(&world, &config, 1).await;
    endpoint.rule(&format!("\\\"{}\\\"", q[0]), Fault::Status { code: 404, retry_after: None }, 100);
    let err = run(&config, quiet()).await.err().unwrap().to_string();
    assert!(
        err.starts_with(
            "endpoint `reasoner`: http_404 after 1 attempt(s): HTTP 404 (check base_url and the model name)"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_reaches_failures_or_the_manifest() {
    const KEY: &str = "sk-test-4f9a8b7c6d5e";
    // SAFETY: set once, before any thread reads this variable; no other test uses it.
    unsafe { std::env::set_var("LREM_TEST_SECRET_KEY", KEY) };
    let world = World::new();
    let endpoint = Endpoint::default();
    let base = endpoint.start().await;
    let config = world.config(&base, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("model = \"fake-chat\"", "model = \"fake-chat\"\napi_key_env = \"LREM_TEST_SECRET_KEY\"");
    std::fs::write(&config, text).unwrap();
    let q = hard_queries(&world, &config, 1).await;
    endpoint.rule(&format!("\\\"{}\\\"", q[0]), Fault::EchoAuthorization, 100);
    let (run_dir, _) = run(&config, quiet()).await.unwrap();
    let failures = sql(&run_dir, "select message from failures").await;
    assert!(failures.contains("upstream failed for request with Bearer [redacted]"), "{failures}");
    assert!(!failures.contains(KEY));
    let manifest = std::fs::read_to_string(lrem_schemas::RunDir::new(&run_dir).manifest(None)).unwrap();
    assert!(manifest.contains("LREM_TEST_SECRET_KEY") && !manifest.contains(KEY));
}

/// A config of `world` for `base`, and the directory of an unsharded run of it made elsewhere.
async fn config_and_reference(world: &World, base: &str) -> (PathBuf, PathBuf) {
    let sharded = world.config(base, "");
    let reference = edited(
        &sharded,
        &format!("run_dir = \"{}\"", world.run_dir().display()),
        &format!("run_dir = \"{}\"", world.root.join("reference").display()),
    );
    (sharded, run(&reference, quiet()).await.unwrap().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_together_equal_one_unsharded_run() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (sharded, reference_dir) = config_and_reference(&world, &endpoint.start().await).await;

    let shard = |i| RunOptions { shard: Some(lrem_pipeline::stages::Shard { index: i, count: 3 }), ..quiet() };
    let err = run(&sharded, shard(0)).await.err().unwrap().to_string();
    assert!(err.contains("needs `queries` done") && err.contains("--until queries --shard none"), "{err}");
    run(&sharded, RunOptions { until: Some(stages::find("hard_queries").unwrap()), ..quiet() }).await.unwrap();
    for i in 0..3 {
        run(&sharded, shard(i)).await.unwrap();
        assert!(world.run_dir().join(format!("tables/triples/shard={i}")).is_dir());
        let storage = lrem_schemas::store::Storage::open(&world.run_dir().display().to_string()).unwrap();
        let shard = Some(lrem_pipeline::stages::Shard { index: i, count: 3 });
        let run = lrem_schemas::RunDir::new(world.run_dir());
        assert!(Manifest::load(&storage, &run, shard).await.unwrap().is_some());
    }
    for table in ["reasoning", "cot", "gain", "relevance", "triples", "triples_rl", "triples_cold_start"] {
        let query = format!("select * from {table} order by 1, 2, 3, 4");
        let (a, b) = (sql_jsonl(&reference_dir, &query).await, sql_jsonl(&world.run_dir(), &query).await);
        assert!(a == b, "{table}: the shards' union differs from the unsharded run");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phases_with_every_heavy_stage_sharded_equal_one_unsharded_run() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (sharded, reference_dir) = config_and_reference(&world, &endpoint.start().await).await;
    // A phase of shards cannot start before the phase it reads is complete: nothing is written.
    let shard = |i, until: Option<&str>| RunOptions {
        shard: Some(lrem_pipeline::stages::Shard { index: i, count: 3 }),
        until: until.map(|u| stages::find(u).unwrap()),
        ..quiet()
    };
    let err = run(&sharded, shard(0, Some("retrieval_1"))).await.err().unwrap().to_string();
    assert!(err.contains("needs `queries` done"), "{err}");
    assert!(!world.run_dir().join("tables").exists(), "a refused shard wrote tables");
    for phase in lrem_pipeline::stages::PHASES {
        if phase.sharded {
            for i in 0..3 {
                run(&sharded, shard(i, phase.until)).await.unwrap();
            }
        } else {
            let until = phase.until.map(|u| stages::find(u).unwrap());
            run(&sharded, RunOptions { until, ..quiet() }).await.unwrap();
        }
    }
    // The catalogue was embedded by three processes, a third each.
    let per_shard = sql_jsonl(&world.run_dir(), "select count(*) as n from item_embeddings").await;
    let items = sql_jsonl(&reference_dir, "select count(*) as n from item_embeddings").await;
    assert_eq!(per_shard, items);
    for i in 0..3 {
        assert!(world.run_dir().join(format!("tables/item_embeddings/shard={i}")).is_dir());
    }
    for table in ["retrieval_1", "hard_queries", "reasoning", "cot", "retrieval_2", "gain", "relevance", "triples"] {
        let query = format!("select * from {table} order by 1, 2, 3, 4");
        let (a, b) = (sql_jsonl(&reference_dir, &query).await, sql_jsonl(&world.run_dir(), &query).await);
        assert!(a == b, "{table}: the phased shards differ from the unsharded run");
    }
}

async fn sql_jsonl(run_dir: &Path, query: &str) -> String {
    let inspector = Inspector::open(run_dir).await.unwrap();
    render(&inspector.query(query).await.unwrap()[0], OutputFormat::Jsonl).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_runs_on_the_approximate_index_too() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let config =
        edited(&world.config(&endpoint.start().await, ""), "k = 20", "k = 20\nindex = \"hnsw\"\nef_search = 64");
    let (run_dir, manifest) = run(&config, quiet()).await.unwrap();
    assert!(manifest.stages.values().all(|r| r.state == StageState::Done));
    assert_eq!(number(&run_dir, "select count(*) from retrieval_1 where rank > 20").await, 0);
    assert!(number(&run_dir, "select count(*) from triples").await > 0);
}

/// The reference teacher over real HTTP, as the pipeline's reasoner: every keyword list it gives
/// is exactly the relevant types of the query's need, and what it does not know ends in
/// `failures`, never in triples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_teacher_names_each_needs_types_and_refuses_what_it_does_not_know() {
    use lrem_pipeline::datagen::teacher::{MODEL, Teacher, UNKNOWN, router};
    use lrem_pipeline::datagen::world::{WORLD_TOML, World as Knowledge};
    let knowledge = Knowledge::load(WORLD_TOML).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let teacher_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(Teacher::new(&knowledge).unwrap())).await.unwrap() });

    let world = World::new();
    let endpoint = Endpoint::default();
    let base = endpoint.start().await;
    let config = edited(
        &world.config(&base, ""),
        &format!("[endpoints.reasoner]\nbase_url = \"{base}\"\nmodel = \"fake-chat\""),
        &format!("[endpoints.reasoner]\nbase_url = \"{teacher_url}\"\nmodel = \"{MODEL}\""),
    );
    let (run_dir, manifest) = run(&config, quiet()).await.unwrap();
    assert!(manifest.stages["keywords"].rows_out > 5, "{:?}", manifest.stages["keywords"]);

    let knowledge = Knowledge::load(WORLD_TOML).unwrap();
    let teacher = Teacher::new(&knowledge).unwrap();
    let lists = sql(&run_dir, "select query, array_to_string(keywords, '|') as k from keywords").await;
    for line in lists.lines().skip(1) {
        let (query, keywords) = line.rsplit_once(',').unwrap();
        let reasoning = teacher.answer(query.trim_matches('"'));
        let expected: Vec<String> = serde_json::from_str(&teacher.answer(&format!("Text: {reasoning}"))).unwrap();
        assert_eq!(keywords.split('|').collect::<Vec<_>>(), expected, "{query}");
    }
    // A query the world does not know: the documented reply, which the pipeline cannot read as
    // a keyword list.
    let failed = sql(
        &run_dir,
        "select count(*) as n from failures f join reasoning r on cast(r.query_id as varchar) = f.key \
         where f.stage = 'keywords' and f.error_kind <> 'unparsable_keywords'",
    )
    .await;
    assert_eq!(failed, "n\n0\n");
    let unknown = UNKNOWN.replace('\'', "''");
    let other = "select count(*) as n from reasoning where reasoning <> '{unknown}' and reasoning not like 'Shoppers with this need buy: %'";
    let unknown = sql(&run_dir, &other.replace("{unknown}", &unknown)).await;
    assert_eq!(unknown, "n\n0\n");
}
