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

.PHONY: all build toolchain run static test unit lint venv clean size

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

test: build static
	@mkdir -p $(OUT)
	@{ UWGATE_BIN=$(CURDIR)/$(BIN) UWGATE_VENV=$(CURDIR)/$(VENV) \
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

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	rm -rf $(OUT)
	$(CARGO) clean

# `make bench` (bench/bench.mk) and the appliance image, RPM and boot test (board image.mk).
-include bench/bench.mk
-include board/$(BOARD)/image.mk
