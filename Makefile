# SPDX-License-Identifier: GPL-2.0
#
# lincell — the two commands:
#   make demo    set everything up, boot a guest, load the modules, show what they report
#   make check   set everything up and run every test (x86_64 guests and the
#                arm64 leg on an emulated virt board); ends with "N passed, N failed"
#
# Other targets:
#   make             build the modules (warnings are errors)
#   make CLIPPY=1    the same, through clippy
#   make setup       install prerequisites only (idempotent)
#   make kernel      fetch + configure + build the cached test kernels only
#   make check-arm64 only the arm64 board's tests (cross-built modules and tools, QEMU virt)
#   make tools       build the userspace tools and the test harness
#   make bench       run the benchmarks and print their figures
#   make dist        package modules, tools, udev rule and install.sh for a board:
#                    dist/lincell-<version>-<arch>.tar.gz (scripts/dist.sh)
#   make clean
#
# Variables:
#   KDIR=/path/to/build   build against your own kernel tree (CONFIG_RUST=y,
#                         built with the same rustc); skips the cached kernel
#   LINCELL_CACHE=dir     where downloads and the kernel build live
#                         (default ~/.cache/lincell)
#   ARCH=arm64            build for arm64: without KDIR= against the cached
#                         arm64 test kernel (built on first use), with Debian's
#                         cross GCC (CROSS_COMPILE=aarch64-linux-gnu- unless given);
#                         with KDIR=, for a board's own kernel
#   CARGO_BUILD_TARGET=triple
#                         make dist: the tools' Rust target (for instance
#                         aarch64-unknown-linux-musl for an arm64 board)
#   FILTER=name           make check: run only guest tests whose name contains it
#                         (arm64/NAME on the arm64 board, v2/NAME the ivshmem 2.0 runs of
#                         revisions= tests); make bench: only those benchmarks
#   V=1                   make check, make bench: echo guest consoles

ROOT := $(CURDIR)
CARGO ?= cargo
LINCELL_VM := $(ROOT)/target/debug/lincell-vm

# The kernel to build against: yours (KDIR=) or the cached test kernel, which
# scripts/kernel.sh builds on first use and prints the path of.
ifdef KDIR
KERNEL_DIR := $(KDIR)
else
KERNEL_DIR = $$(scripts/kernel.sh)
endif

# arm64: Debian's cross compiler unless the caller names another; the
# variables reach scripts/kernel.sh and the kernel's make through the
# environment.
ifeq ($(ARCH),arm64)
CROSS_COMPILE ?= aarch64-linux-gnu-
export ARCH CROSS_COMPILE
endif

# Warnings are errors for our code, whatever the kernel's CONFIG_WERROR says.
MODULE_FLAGS := KRUSTFLAGS=-Dwarnings KCFLAGS=-Werror

.PHONY: all modules setup kernel tools check check-arm64 demo bench dist clean

all: modules

setup:
	@scripts/setup.sh

kernel: setup
	@scripts/kernel.sh >/dev/null
	@ARCH=arm64 scripts/kernel.sh >/dev/null

modules: setup
	@kdir=$(KERNEL_DIR) && \
	echo "==> Building modules against $$kdir" && \
	$(MAKE) --no-print-directory -C "$$kdir" M=$(ROOT) $(MODULE_FLAGS) modules

tools: setup
	@echo "==> Building userspace tools and the test harness (cargo)"
	@$(CARGO) build --workspace --quiet

# The arm64 board (QEMU virt, cross-built modules and tools) runs the guest
# tests whose arch= names it, unless FILTER names only other tests.
ARM64_LEG = $(if $(or $(if $(FILTER),,1),$(findstring arm64,$(FILTER))),1)

check: modules tools
	@kdir=$(KERNEL_DIR) && \
	$(if $(ARM64_LEG),kdir64=$$(ARCH=arm64 scripts/kernel.sh) && ,) \
	$(LINCELL_VM) --kdir "$$kdir" check $(if $(FILTER),--filter $(FILTER)) $(if $(V),--verbose) \
		$(if $(ARM64_LEG),--arm64 "$$kdir64")

# Only the arm64 board's tests.
check-arm64: setup tools
	@kdir=$(KERNEL_DIR) && kdir64=$$(ARCH=arm64 scripts/kernel.sh) && \
	$(LINCELL_VM) --kdir "$$kdir" check --no-host --filter arm64/ --arm64 "$$kdir64"

demo: modules tools
	@kdir=$(KERNEL_DIR) && \
	$(LINCELL_VM) --kdir "$$kdir" scenario $(ROOT)/samples/demo.sh

# Benchmarks (bench/*.sh, harness scenarios): each prints its figures as a
# table, with the ratios against its baseline measured in the same run
# (README, Performance). cpu_isolate: noise on an isolated vs a loaded
# housekeeping CPU; ivshmem: doorbell round trips (read, poll) vs spinning
# on shared memory; vdev-remote: a remote disk vs virtio-blk-pci.
bench: modules tools
	@kdir=$(KERNEL_DIR) && \
	$(LINCELL_VM) --kdir "$$kdir" bench $(if $(FILTER),--filter $(FILTER)) $(if $(V),--verbose)

# A tarball for a board: the modules as just built, the tools (built by the
# script, for CARGO_BUILD_TARGET if set), the udev rule, install.sh.
dist: modules
	@sh scripts/dist.sh

clean:
	@kdir=$(KERNEL_DIR) && $(MAKE) --no-print-directory -C "$$kdir" M=$(ROOT) clean
	$(CARGO) clean
