# The appliance deliverables of board x86_64-centos7, included by the top-level Makefile
# (which defines BIN, TARGET, OUT, CARGO, BOARD_* and `build`).
#
#   make rootfs      out/rootfs/: the rootfs/ overlay + the stripped binary at BOARD_BINARY_PATH
#   make image       out/uwgate-rootfs.ext4 (mke2fs -d, no mount, no root needed for mke2fs
#                    itself) and out/uwgate-rootfs.tar.gz
#   make rpm         out/uwgate-VERSION-1.el7.x86_64.rpm (rpmbuild from Debian's `rpm` package)
#   make image-test  boots the ext4 image under qemu-system-x86_64 (TCG) and tests it from the
#                    host, with one in-place upgrade to the upgrade-test build inside the guest:
#                    tests/image/README.md
#
# Each target installs the Debian packages it is missing (e2fsprogs, rpm, qemu-system-x86) with
# apt-get when run as root; otherwise it names the package to install.

UWGATE_VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
ROOTFS_DIR     := $(OUT)/rootfs
IMAGE_EXT4     := $(OUT)/uwgate-rootfs.ext4
IMAGE_TAR      := $(OUT)/uwgate-rootfs.tar.gz
RPM_TOPDIR     := $(OUT)/rpmbuild
RPM_FILE       := $(OUT)/uwgate-$(UWGATE_VERSION)-1.el7.x86_64.rpm
IMAGE_TEST_DIR := $(OUT)/image-test
BACKEND_BIN    := target/$(TARGET)/release/examples/uwsgi_backend
BOARD_DIR      := board/$(BOARD)

# need_tool COMMAND PACKAGE: install PACKAGE with apt-get when COMMAND is missing.
need_tool = command -v $(1) >/dev/null 2>&1 || { \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(2) (for $(1))"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(2) >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y -q --no-install-recommends $(2) >/dev/null; }; \
	else echo "$(1) not found: install the Debian package $(2)"; exit 1; fi; }

.PHONY: rootfs image rpm image-test backend

# Stage the overlay with normalised modes (a checkout's depend on the umask) and root ownership.
rootfs: build
	rm -rf $(ROOTFS_DIR)
	mkdir -p $(ROOTFS_DIR)
	cp -R rootfs/. $(ROOTFS_DIR)/
	find $(ROOTFS_DIR) -name .keep -delete
	find $(ROOTFS_DIR) -type d -exec chmod 0755 {} +
	find $(ROOTFS_DIR) -type f -exec chmod 0644 {} +
	chmod 0755 $(ROOTFS_DIR)/etc/init.d/uwgate
	install -D -m 0755 $(BIN) $(ROOTFS_DIR)$(BOARD_BINARY_PATH)
	strip --strip-all $(ROOTFS_DIR)$(BOARD_BINARY_PATH) 2>/dev/null || true
	install -d -m 0755 $(ROOTFS_DIR)/var/lib/uwgate $(ROOTFS_DIR)/var/log
	install -d -m 0700 $(ROOTFS_DIR)/var/lib/uwgate/tmp
	if [ "$$(id -u)" = 0 ]; then chown -R 0:0 $(ROOTFS_DIR); fi
	$(ROOTFS_DIR)$(BOARD_BINARY_PATH) -t -c $(ROOTFS_DIR)/etc/uwgate.ini
	@echo "rootfs: $(ROOTFS_DIR) ($$(du -sk $(ROOTFS_DIR) | cut -f1) KiB, $$(find $(ROOTFS_DIR) -type f | wc -l) files)"

# The ext4 image is sparse: BOARD_IMAGE_SIZE_MB apparent, a few MiB allocated. Files keep the
# staged owners (root when staged as root; run `fakeroot make image` otherwise).
image: rootfs
	@$(call need_tool,mke2fs,e2fsprogs)
	rm -f $(IMAGE_EXT4) $(IMAGE_TAR)
	mke2fs -q -F -t ext4 -L uwgate -m 0 -d $(ROOTFS_DIR) $(IMAGE_EXT4) $(BOARD_IMAGE_SIZE_MB)M
	e2fsck -f -n $(IMAGE_EXT4) >/dev/null
	tar --sort=name --owner=0 --group=0 --numeric-owner -C $(ROOTFS_DIR) -czf $(IMAGE_TAR) .
	@echo "image: $(IMAGE_EXT4) $$(($$(stat -c %s $(IMAGE_EXT4)) / 1048576)) MiB ext4, \
	$$(du -k $(IMAGE_EXT4) | cut -f1) KiB allocated, $$(gzip -c $(IMAGE_EXT4) | wc -c) bytes gzipped"
	@echo "image: $(IMAGE_TAR) $$(stat -c %s $(IMAGE_TAR)) bytes"

rpm: rootfs
	@$(call need_tool,rpmbuild,rpm)
	rm -rf $(RPM_TOPDIR) $(RPM_FILE)
	mkdir -p $(RPM_TOPDIR)
	rpmbuild -bb --quiet --target x86_64 \
	  --define "_topdir $(CURDIR)/$(RPM_TOPDIR)" \
	  --define "stagedir $(CURDIR)/$(ROOTFS_DIR)" \
	  --define "uwgate_version $(UWGATE_VERSION)" \
	  --define "dist .el7" \
	  --define "_binary_payload w7.xzdio" \
	  $(BOARD_DIR)/uwgate.spec
	cp $(RPM_TOPDIR)/RPMS/x86_64/uwgate-$(UWGATE_VERSION)-1.el7.x86_64.rpm $(RPM_FILE)
	rpm -qlp $(RPM_FILE) > $(RPM_TOPDIR)/files.txt
	for f in /usr/sbin/uwgate /etc/uwgate.ini /usr/lib/systemd/system/uwgate.service \
	         /etc/rc.d/init.d/uwgate /etc/rsyslog.d/uwgate.conf; do \
	  grep -qx "$$f" $(RPM_TOPDIR)/files.txt || { echo "rpm: $$f missing"; exit 1; }; done
	rpm -qp --configfiles $(RPM_FILE) | grep -qx /etc/uwgate.ini
	@cat $(RPM_TOPDIR)/files.txt
	@echo "rpm: $(RPM_FILE) $$(stat -c %s $(RPM_FILE)) bytes"

# The guest's backend: std only, static musl, supervised by uwgate inside the guest.
backend: toolchain
	RUSTFLAGS="$(BOARD_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) \
	  --example uwsgi_backend

image-test: image backend upgrade-test-bin
	@$(call need_tool,qemu-system-x86_64,qemu-system-x86)
	tests/image/fetch.sh $(IMAGE_TEST_DIR)
	tests/image/initramfs.sh $(IMAGE_TEST_DIR) $(BACKEND_BIN) $(UPGRADE_BIN)
	tests/image/boot_test.sh $(IMAGE_TEST_DIR) $(IMAGE_EXT4)
