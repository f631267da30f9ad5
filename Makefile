# The two commands: `make demo` and `make test`. Both create or reuse .venv/.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_output

.PHONY: venv ssh-test-tools test test-fast dicom3tools demo benchmark benchmark-accuracy benchmark-onnx benchmark-gpu benchmark-levers model-catalog slicer-dev clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[test]"
	touch $(STAMP)

# The remote-worker tests start a real sshd on 127.0.0.1: install OpenSSH's server and rsync when missing (as root
# with apt-get, as in CI); elsewhere those tests skip and say why.
ssh-test-tools:
	@if ! command -v sshd >/dev/null && ! test -x /usr/sbin/sshd || ! command -v rsync >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server rsync >/dev/null; \
		else echo "openssh-server/rsync not installed (not root): the remote-worker tests will skip"; fi; fi

test: venv dicom3tools ssh-test-tools
	$(PY) -m ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# dciodvfy validates the DICOM SEG test's output; installed where apt works as root, else that test skips
dicom3tools:
	@command -v dciodvfy >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends dicom3tools >/dev/null) || \
		echo "dciodvfy not installed (Debian package dicom3tools): the DICOM SEG validation test will skip"; }

test-fast: venv
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m "not slow"

demo: venv
	$(PY) -m deepmed demo --out $(DEMO_OUT)

benchmark: venv
	$(PY) benchmarks/bench_train_infer.py

benchmark-onnx: venv   # torch vs onnxruntime on the CPU: s/volume, peak RSS, agreement (docs/benchmarks.md)
	$(PY) benchmarks/bench_onnx.py --threads 2

benchmark-gpu:   # the GPU figures in one command (docs/benchmarks.md "On a GPU"); without CUDA: one line, exit 2
	bash benchmarks/gpu.sh

benchmark-levers: venv   # every CPU lever of inference, one row each, on two models (docs/benchmarks.md "CPU levers")
	$(PY) benchmarks/bench_cpu_levers.py --out cpu_levers.json

WALL ?= 189
COHORT ?= ct
RUNS ?= 1
benchmark-accuracy: venv   # engine defaults vs. a plain MONAI script at equal wall time (ct|mr; 2 x WALL + 2 min a run)
	$(PY) benchmarks/bench_accuracy_per_minute.py --cohort $(COHORT) --wall $(WALL) --runs $(RUNS) \
		--out benchmark_accuracy_$(COHORT).json

BUNDLES ?= ../shared/data/monai-bundles
model-catalog: venv   # the catalogue's MONAI Model Zoo entries, made again from the bundles that import and run
	$(PY) -m deepmed zoo catalog-from-bundles $(wildcard $(BUNDLES)/*/) --model-info $(BUNDLES)/model_info.json \
		--run-check --into SlicerDeepMed/deepmed/zoo/catalog.json

# A developer checkout in a real Slicer: the engine (editable, no dependencies: the panels install them) and the
# modules' shared DeepMedLib on Slicer's Python path, through one .pth file; then add the three module folders
# in Application Settings > Modules. An installed extension needs none of this (all sit in qt-scripted-modules).
slicer-dev:
	@test -n "$(SLICER_PYTHON)" || { echo "usage: make slicer-dev SLICER_PYTHON=/path/to/Slicer/bin/PythonSlicer"; exit 2; }
	"$(SLICER_PYTHON)" -m pip install --no-deps -e .
	"$(SLICER_PYTHON)" -c "import pathlib, sysconfig; p = pathlib.Path(sysconfig.get_paths()['purelib'], 'deepmed-slicer-modules.pth'); p.write_text('$(CURDIR)/SlicerDeepMed/Modules\n'); print('wrote', p)"

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
