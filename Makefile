# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

# the ray extra too, so that `make test` runs the Ray engine tests (Ray stays optional for users)
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test,ray]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/diffmem demo --out demo-out

test: $(STAMP)
	$(PY) -m pytest -q

# every benchmark at its quick setting (the README names the larger runs it quotes)
bench: $(STAMP)
	$(VENV)/bin/diffmem world make bench-out/world --seed 0 --size small
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_flow.py
	$(PY) benchmarks/bench_sampling.py
	$(PY) benchmarks/bench_detect.py cost
	$(PY) benchmarks/bench_amg.py --world bench-out/world
	$(PY) benchmarks/bench_scale.py --sizes 100000

clean:
	rm -rf $(VENV) demo-out bench-out
