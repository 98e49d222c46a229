# uwgate — build, run and test. `make run` and `make test` do all the set-up they need.
BOARD ?= x86_64-centos7
include board/$(BOARD)/board.mk

CARGO   ?= cargo
TARGET  := $(BOARD_TARGET)
BIN     := target/$(TARGET)/release/uwgate
OUT     := out
RUNDIR  := $(OUT)/run
VENV    := $(OUT)/venv
PYTHON  ?= python3

.PHONY: all build toolchain run static test lint venv clean size fuzz fuzz-build fuzz-merge \
	scale-test haproxy upgrade-test-bin

all: build

toolchain:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup"; exit 1; }
	@rustup target list --installed 2>/dev/null | grep -qx '$(TARGET)' || rustup target add $(TARGET)

build: toolchain
	RUSTFLAGS="$(BOARD_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET)
	@command -v file >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file >/dev/null
	@file $(BIN) | grep -q 'statically linked' || { file $(BIN); echo "not a static binary"; exit 1; }
	@ls -l $(BIN) | awk '{print "uwgate: " $$5 " bytes, static $(TARGET)"}'

size: build
	@stat -c '%s bytes  $(BIN)' $(BIN)

# A demo config rewritten from the appliance's default: paths into this checkout,
# 127.0.0.1:8080, logs on stderr.
$(RUNDIR)/uwgate.ini: rootfs/etc/uwgate.ini Makefile
	@mkdir -p $(RUNDIR)/tmp
	sed -e 's#/django/DjangoBlog#$(CURDIR)/tests/django_app#g' \
	    -e 's#/opt/venv/#$(CURDIR)/$(VENV)/#g' \
	    -e 's#^listen = .*#listen = 127.0.0.1:8080#' \
	    -e 's#^syslog = .*#syslog = stderr#' \
	    -e 's#^pidfile = .*#pidfile = $(CURDIR)/$(RUNDIR)/uwgate.pid#' \
	    -e 's#^temp_path = .*#temp_path = $(CURDIR)/$(RUNDIR)/tmp#' \
	    -e 's#^control_socket = .*#control_socket = $(CURDIR)/$(RUNDIR)/uwgate.sock#' \
	    -e 's#^user = .*##' -e 's#^group = .*##' \
	    rootfs/etc/uwgate.ini > $@

# The demo's static tree holds its own files (committed) and, beside them, the Django admin's,
# which `collectstatic` copies from the pinned Django (not committed: 1.8 MB of Django's own
# files). Made again when missing or when the virtualenv changes; collectstatic skips files
# already there, so a second run copies nothing.
DEMO_DIR  := tests/django_app
ADMIN_CSS := $(DEMO_DIR)/collectedstatic/admin/css/base.css

$(ADMIN_CSS): $(VENV)/.stamp
	cd $(DEMO_DIR) && PYTHONDONTWRITEBYTECODE=1 $(CURDIR)/$(VENV)/bin/python manage.py collectstatic --noinput -v 0
	@test -f $@ || { echo "collectstatic did not produce $@"; exit 1; }
	touch $@

static: venv $(ADMIN_CSS)

run: build static $(RUNDIR)/uwgate.ini
	cd $(DEMO_DIR) && PYTHONDONTWRITEBYTECODE=1 $(CURDIR)/$(VENV)/bin/python manage.py migrate --noinput -v 0
	@echo "uwgate: serving on http://127.0.0.1:8080/  (Ctrl-C stops)"
	$(BIN) -f -c $(RUNDIR)/uwgate.ini

# The real uWSGI and Django the tests (and `make run`) talk to, pinned, in a virtualenv.
$(VENV)/.stamp: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	$(VENV)/bin/uwsgi --version >/dev/null
	touch $@

venv: $(VENV)/.stamp

# Every test: unit tests beside the code, then the integration tests in tests/ run against
# the static release binary that ships, a real pyuwsgi and a real Django app. Every test
# binary runs even after a failure (--no-fail-fast), the output is kept in out/test.log, and
# the last line is the total over all binaries: `make test: N passed, N failed, N ignored`.
# The target fails when a test failed, cargo failed, or no test ran.
TEST_LOG := $(OUT)/test.log

test: build static upgrade-test-bin
	@mkdir -p $(OUT)
	@{ UWGATE_BIN=$(CURDIR)/$(BIN) UWGATE_VENV=$(CURDIR)/$(VENV) \
	   UWGATE_UPGRADE_BIN=$(CURDIR)/$(UPGRADE_BIN) \
	   $(CARGO) test --locked --no-fail-fast -- --test-threads=4 2>&1; \
	   echo $$? > $(TEST_LOG).status; } | tee $(TEST_LOG)
	@awk -v status="$$(cat $(TEST_LOG).status)" -v logfile="$(TEST_LOG)" \
	    '/^test result: / { runs++; \
	         for (i = 2; i <= NF; i++) { \
	             if ($$i ~ /^passed/) passed += $$(i - 1); \
	             if ($$i ~ /^failed/) failed += $$(i - 1); \
	             if ($$i ~ /^ignored/) ignored += $$(i - 1) } } \
	     END { if (runs == 0) { \
	               print "make test: no test ran (cargo exit status " status "; see " logfile ")"; exit 1 } \
	           printf "make test: %d passed, %d failed, %d ignored (%d test binaries", \
	               passed, failed, ignored, runs; \
	           if (status != 0) printf "; cargo exit status %s, see %s", status, logfile; \
	           print ")"; \
	           exit (failed > 0 || status != 0) }' $(TEST_LOG)

# Coverage-guided fuzzing of every parser (libFuzzer through libfuzzer-sys, on stable Rust: see
# the README's "Fuzzing"). `make fuzz` runs each target for FUZZ_SECONDS, one after another,
# starting from the committed corpus (fuzz/corpus/TARGET, read only) and keeping what it finds in
# out/fuzz/TARGET; a crash or a hang (an input over FUZZ_TIMEOUT seconds) stops it and leaves the
# input as out/fuzz/TARGET-crash-* (or -timeout-*): keep it as fuzz/regressions/TARGET/NAME and
# write the named unit test beside the parser. `make fuzz-merge` folds out/fuzz back into the
# committed corpus, minimised to the smallest set that keeps every edge covered; `make test`
# replays it and fuzz/regressions (tests/fuzz_corpus.rs).
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_TARGETS ?= request_head chunked range path config upstream_response packet proxy_protocol realip
FUZZ_HOST    := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
FUZZ_BIN     := fuzz/target/$(FUZZ_HOST)/release
FUZZ_RUSTFLAGS := --cfg fuzzing -Cpasses=sancov-module \
	-Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
	-Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
	-Cdebug-assertions -Coverflow-checks

fuzz-build:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup"; exit 1; }
	@command -v c++ >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
	cd fuzz && RUSTFLAGS="$(FUZZ_RUSTFLAGS)" $(CARGO) build --release --locked --target $(FUZZ_HOST)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(OUT)/fuzz/$$t; \
	  dict=; [ -f fuzz/dict/$$t.dict ] && dict=-dict=fuzz/dict/$$t.dict; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  $(FUZZ_BIN)/$$t $(OUT)/fuzz/$$t fuzz/corpus/$$t $$(ls -d fuzz/regressions/$$t 2>/dev/null) \
	    $$dict -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
	    -artifact_prefix=$(OUT)/fuzz/$$t- 2>$(OUT)/fuzz/$$t.log \
	    || { tail -40 $(OUT)/fuzz/$$t.log; echo "fuzz: $$t failed; input in $(OUT)/fuzz/$$t-*"; exit 1; }; \
	  awk -v t=$$t '/^#[0-9]+/ { for (i = 1; i < NF; i++) if ($$i == "cov:") c = $$(i + 1) } \
	    /^Done/ { n = $$2; s = $$5 } END { printf "  %s: %s executions in %s s, %s coverage points\n", t, n, s, c }' \
	    $(OUT)/fuzz/$$t.log; \
	done

fuzz-merge: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  rm -rf $(OUT)/fuzz/merged-$$t && mkdir -p $(OUT)/fuzz/merged-$$t $(OUT)/fuzz/$$t; \
	  $(FUZZ_BIN)/$$t -merge=1 -use_counters=0 $(OUT)/fuzz/merged-$$t fuzz/corpus/$$t $(OUT)/fuzz/$$t \
	    2>/dev/null || exit 1; \
	  rm -f fuzz/corpus/$$t/* && cp $(OUT)/fuzz/merged-$$t/* fuzz/corpus/$$t/; \
	  echo "fuzz: $$t corpus $$(ls fuzz/corpus/$$t | wc -l) files, $$(cat fuzz/corpus/$$t/* | wc -c) bytes"; \
	done

# More than one appliance: Debian's HAProxy, configured by docs/haproxy/haproxy.cfg, in front
# of two uwgate appliances on loopback, each supervising its own uWSGI + Django
# (tests/scale_out.rs, ignored by `make test`). The measurements go to out/scale-test.log.
haproxy:
	@command -v haproxy >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	@haproxy -v | head -1

scale-test: build static haproxy
	@mkdir -p $(OUT)
	@{ UWGATE_BIN=$(CURDIR)/$(BIN) UWGATE_VENV=$(CURDIR)/$(VENV) \
	   $(CARGO) test --locked --test scale_out -- --ignored --nocapture 2>&1; \
	   echo $$? > $(OUT)/scale-test.status; } | tee $(OUT)/scale-test.log
	@exit $$(cat $(OUT)/scale-test.status)

# The in-place upgrade's "next version" (tests/upgrade.rs, the image test's upgrade, make bench):
# the same build with --features upgrade-test (it reports VERSION+upgrade-test), in a target
# directory of its own so the shipped binary is untouched.
UPGRADE_TARGET_DIR := $(OUT)/upgrade-test
UPGRADE_BIN := $(UPGRADE_TARGET_DIR)/$(TARGET)/release/uwgate

upgrade-test-bin: toolchain
	RUSTFLAGS="$(BOARD_RUSTFLAGS)" CARGO_TARGET_DIR=$(UPGRADE_TARGET_DIR) \
	    $(CARGO) build --release --locked --target $(TARGET) --features upgrade-test

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	python3 tools/check-layers.py src
	cd fuzz && $(CARGO) fmt --check

clean:
	rm -rf $(OUT) fuzz/target
	$(CARGO) clean

# `make bench` (bench/bench.mk) and the appliance image, RPM and boot test (board image.mk).
-include bench/bench.mk
-include board/$(BOARD)/image.mk
