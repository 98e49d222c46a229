# Board: a CentOS 7-class x86_64 appliance (kernel 3.10+, no glibc assumptions).
# Read by the top-level Makefile; everything that differs per board lives here.

# Rust target triple: static musl, so the binary runs on any x86_64 Linux userland.
BOARD_TARGET := x86_64-unknown-linux-musl

# Baseline x86-64 (no AVX assumptions: appliances run on old Atoms and Xeons alike), C runtime
# linked statically, not position-independent (a plain static executable: `file` says
# "statically linked", and old kernels' loaders need no relocation support).
BOARD_RUSTFLAGS := -C target-cpu=x86-64 -C target-feature=+crt-static -C relocation-model=static

# What the image holds (see board/x86_64-centos7/README.md) and how big it may be.
BOARD_IMAGE_SIZE_MB := 64
BOARD_BINARY_PATH := /usr/sbin/uwgate
