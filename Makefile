# The README's two set-up commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: venv test test-fast demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The suite in three passes (tests/conftest.py): the modules that never run TensorFlow once,
# with TensorFlow imports forbidden; every other test under oneDNN off, then on. TensorFlow
# turns oneDNN on by itself on AVX-512/AMX CPUs, which changes kernels and summation orders.
NO_TF_TESTS = $(shell $(PY) -c "from tests.conftest import no_tf_paths; print(' '.join(no_tf_paths()))")

test: $(STAMP)
	@echo "=== make test 1/3: tests that never run TensorFlow (MRCNN_FORBID_TF=1) ==="
	MRCNN_FORBID_TF=1 $(PY) -m pytest -q $(NO_TF_TESTS)
	@echo "=== make test 2/3: TensorFlow tests, TF_ENABLE_ONEDNN_OPTS=0 (oneDNN off) ==="
	TF_ENABLE_ONEDNN_OPTS=0 $(PY) -m pytest -q -m "not no_tf" tests
	@echo "=== make test 3/3: TensorFlow tests, TF_ENABLE_ONEDNN_OPTS=1 (oneDNN on) ==="
	TF_ENABLE_ONEDNN_OPTS=1 $(PY) -m pytest -q -m "not no_tf" tests
	@echo "=== make test: all three passes green (oneDNN off and on) ==="

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

demo: $(STAMP)
	$(PY) -m bench.demo

bench: $(STAMP)
	$(PY) -m bench.quick

clean:
	rm -rf $(VENV) build *.egg-info
