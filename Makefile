# Conveniences; each target is also a plain command (see README.md).
.PHONY: test lint compliance bench bench-quick

test:            ## everything CI runs (installs what it needs)
	bash scripts/test.sh

lint:            ## ruff and mypy only
	ruff check src tests compliance bench
	ruff format --check src tests compliance bench
	mypy --strict src

compliance:      ## the complete Autobahn|Testsuite, all 517 cases, both roles (~30 min)
	python compliance/run.py both --cases '*'

bench:           ## the full benchmark; writes docs/performance.md
	python bench/run.py

bench-quick:     ## a smoke run of the benchmark (what CI runs)
	python bench/run.py --quick
