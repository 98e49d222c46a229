# `make bench` (issue 5): uwgate against nginx and supervisord, side by side, on 127.0.0.1.
# Included by the top-level Makefile, which defines BIN, VENV, OUT, PYTHON and `build`.
# Installs what it needs (quick when present), then runs bench/bench.py, which prints the
# table and writes it to bench/RESULTS.md. BENCH_ARGS passes options (e.g. --rounds 5; for
# scenario 10, slow peers: --slow-peers-conns 3000 --slow-peers-duration 30 --slow-peers-rounds 1;
# `--only 10` runs it alone; scenario 11, in-place upgrade, uses the upgrade-test build:
# `--only 11 --upgrade-rounds 10`; `--only 12`, deploys under load against supervisord +
# supervisorctl, which lives beside supervisord in the bench venv).

BENCH_VENV  := $(OUT)/bench-venv
BENCH_SUPERVISOR := supervisor==4.3.0
BENCH_ARGS ?=

.PHONY: bench bench-deps bench-alloc-bin bench-loadgen

# Debian's nginx (nginx-light where it exists), wrk, strace and slowhttptest (scenario 10);
# supervisord in a venv of its own.
bench-deps:
	@missing=""; for t in nginx wrk strace slowhttptest; do \
	    command -v $$t >/dev/null 2>&1 || [ -x /usr/sbin/$$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	    echo "bench: installing$$missing"; \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    $$sudo apt-get update -qq && \
	    { DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq nginx-light wrk strace slowhttptest || \
	      DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq nginx wrk strace slowhttptest; }; \
	fi
	@test -x $(BENCH_VENV)/bin/supervisord || { \
	    $(PYTHON) -m venv $(BENCH_VENV) && \
	    $(BENCH_VENV)/bin/pip install -q --disable-pip-version-check '$(BENCH_SUPERVISOR)'; }

# Scenario 9's binary: the same build with the counting allocator (`--features count-alloc`),
# in a target directory of its own so the shipped binary is untouched.
ALLOC_TARGET_DIR := $(OUT)/count-alloc
ALLOC_BIN := $(ALLOC_TARGET_DIR)/$(TARGET)/release/uwgate

bench-alloc-bin: toolchain
	RUSTFLAGS="$(BOARD_RUSTFLAGS)" CARGO_TARGET_DIR=$(ALLOC_TARGET_DIR) \
	    $(CARGO) build --release --locked --target $(TARGET) --features count-alloc

# Scenarios 2 and 3's discarding client (examples/loadgen.rs), built for the host.
LOADGEN := target/release/examples/loadgen

bench-loadgen: toolchain
	$(CARGO) build --release --locked --example loadgen

bench: build venv bench-deps bench-alloc-bin bench-loadgen upgrade-test-bin
	$(PYTHON) bench/bench.py --bin $(CURDIR)/$(BIN) --venv $(CURDIR)/$(VENV) \
	    --alloc-bin $(CURDIR)/$(ALLOC_BIN) --loadgen $(CURDIR)/$(LOADGEN) \
	    --upgrade-bin $(CURDIR)/$(UPGRADE_BIN) \
	    --supervisord $(CURDIR)/$(BENCH_VENV)/bin/supervisord \
	    --nginx $$(command -v nginx || echo /usr/sbin/nginx) \
	    --results bench/RESULTS.md $(BENCH_ARGS)
