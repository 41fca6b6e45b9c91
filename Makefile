# Every target installs what it needs into .venv first; nothing else is required.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# Ours only: the third-party protos/google/ is imported, never generated (the runtime
# uses googleapis-common-protos' google.rpc.status_pb2).
PROTO_FILES := $(shell find protos/saga -name '*.proto' | sort)

.PHONY: install protos openapi demo demo-secure demo-events demo-choreography bench-events test lint format bench bench-big bench-batch bench-async bench-http bench-tracking chaos clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# Regenerate the committed Python stubs in saga/ from protos/, and the .proto copies shipped
# beside them in the wheel (see docs/api.md). protos/ is self-contained: -Iprotos is the
# only include path (`python -m grpc_tools.protoc` adds protobuf's well-known types).
protos: $(INSTALLED)
	find saga -name '*_pb2*.py*' -delete
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO_FILES)
	cd protos && find saga -name '*.proto' -exec install -D -m 644 {} ../{} \;

# The HTTP/JSON API's OpenAPI document, generated from the protos' HTTP rules and comments
# (docs/http.md), into docs/ and the copy the server serves; a test fails while either is stale.
openapi: $(INSTALLED)
	$(PY) -m orchestrator.web.rest.openapi

# The travel-booking demo on the embedded SQLite store (or SAGA_DATABASE_URL if set).
demo: $(INSTALLED)
	$(PY) -m tools.demo $(DEMO_ARGS)

# The same demo with mutual TLS on every hop, tokens and roles (throwaway certificates).
demo-secure: $(INSTALLED)
	$(PY) -m tools.demo --secure

# Saga events consumed from the local RabbitMQ (127.0.0.1:5672) as they happen.
demo-events: $(INSTALLED)
	$(PY) -m tools.demo_events

# A choreographed saga on the local RabbitMQ, tracked by the orchestrator: one booking
# completes, one is refused and unwinds through events, one stalls, is flagged and rescued.
demo-choreography: $(INSTALLED)
	$(PY) -m tools.choreography_demo $(DEMO_ARGS)

# Two workers, one test file each at a time (module fixtures stay per worker), the longest
# files first (tests/conftest.py): xdist would otherwise order files by their count of tests.
test: $(INSTALLED)
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# Crash-recovery chaos run at full size (a small one runs in `make test`).
chaos: $(INSTALLED)
	$(PY) -m tools.chaos $(CHAOS_ARGS)

# Throughput and latency against a group-commit ceiling, a per-write loop and DBOS Transact;
# needs PostgreSQL and a quiet machine.
bench: $(INSTALLED)
	$(PY) bench/run.py $(BENCH_ARGS)

# ListSagas, StartSaga and GetSaga with 1,000,000 sagas stored, against an empty store.
# Events out: cost of the outbox, relay throughput, commit-to-consumer latency, outage drain.
bench-events: $(INSTALLED)
	$(PY) -m bench.events $(BENCH_ARGS)

bench-big: $(INSTALLED)
	$(PY) -m bench.big_store $(BENCH_ARGS)

# Sagas started per second: StartSagas batches against single StartSaga calls (about a minute).
bench-batch: $(INSTALLED)
	$(PY) -m bench.batch_start $(BENCH_ARGS)

# Asynchronous steps: 10,000 waiting sagas idle, the claim's plan, heartbeats, a restart and
# CompleteStep at c=64 (a few minutes; PostgreSQL).
bench-async: $(INSTALLED)
	$(PY) -m bench.async_steps $(BENCH_ARGS)

# StartSaga over HTTP/JSON against gRPC, side by side: p50 at c=1, throughput at c=64.
bench-http: $(INSTALLED)
	$(PY) -m bench.http_api $(BENCH_ARGS)

# Tracked sagas: events ingested per second through TrackedEvents, the lateness of flagging a
# stuck instance, an idle replica with 100,000 open tracked sagas (a few minutes; PostgreSQL).
bench-tracking: $(INSTALLED)
	$(PY) -m bench.tracking $(BENCH_ARGS)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(INSTALLED)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
