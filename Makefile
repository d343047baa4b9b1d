# Everyday targets. `make run` and `make test` each do their own set-up, so a
# fresh machine needs nothing else; CI runs `make test` through .ci/run.
PYTHON ?= python3
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install install-test run test lint unit e2e bench bench-openinference bench-extproc bench-all protos

install:
	$(PYTHON) -m pip install $(PIP_FLAGS) -e .

install-test:
	@command -v curl >/dev/null || (apt-get update -qq && apt-get install -y -qq curl)
	@command -v ffprobe >/dev/null && gst-inspect-1.0 x265enc >/dev/null 2>&1 \
		&& /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 \
			gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
			gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-tools)
	@command -v mosquitto >/dev/null && command -v chromium >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients chromium)
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[test]'

run: install
	$(PYTHON) -m processor.cli --config examples/hello/function.yaml --log-format text

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

test: install-test lint
	$(PYTHON) -m pytest -q

unit:
	$(PYTHON) -m pytest -q test/unit

e2e:
	$(PYTHON) -m pytest -q test/e2e

# The `bench` extra brings the peers (uvicorn, gunicorn) besides the package itself.
bench:
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[bench]'
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PYTHON) test/bench/http_bench.py

# The peers, MLServer (the reference) and KServe, are installed on first use into their own
# venvs, /opt/mlserver-venv and /opt/kserve-venv (their pins clash with ours).
bench-openinference: install-test
	$(PYTHON) test/bench/openinference_bench.py

bench-extproc: install-test
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PYTHON) test/bench/extproc_bench.py

# Every benchmark in sequence; each prints its table and one `<name>: <ratio> (target <t>)`
# line per target. grep ': .*(target' on the output gives the summary.
BENCHES = http ws openinference extproc mjpeg rtsp stream async status fusion
bench-all: install-test
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[bench]'
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@failed=""; for b in $(BENCHES); do echo "== $$b"; \
		$(PYTHON) test/bench/$${b}_bench.py || failed="$$failed $$b"; done; \
		if [ -n "$$failed" ]; then echo "benchmarks that did not run to the end:$$failed"; exit 1; fi

# Generated gRPC modules are committed; test/unit/test_protos.py fails when they are stale.
protos:
	$(PYTHON) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
		protos/open_inference.proto
