# The two commands a fresh machine needs (see README.md):
#   make lab   - set up the host and run the main job on the embedded netns lab
#   make test  - set up the host and pass the tests
# Everything runs as root on the host; .venv is made by tools/bootstrap.sh.
SHELL := /bin/bash
VENV := .venv/bin
PLAYBOOK := $(VENV)/ansible-playbook
# Extra ansible-playbook arguments, e.g. make lab ARGS="-e lab_profile=full"
ARGS ?=
# molecule and ansible-lint call ansible-playbook by name.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: bootstrap lab test lint unit integration molecule teardown clean test-browser test-vm test-kernel

bootstrap:
	@tools/bootstrap.sh

lab: bootstrap
	$(PLAYBOOK) site.yml $(ARGS)

test: bootstrap lint unit integration molecule

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/ansible-lint --profile production
	$(PLAYBOOK) --syntax-check site.yml playbooks/teardown.yml
	$(PLAYBOOK) -i inventories/kind --syntax-check playbooks/cluster.yml playbooks/cluster_down.yml playbooks/cluster_render.yml

unit:
	$(VENV)/pytest -q tests/unit

integration:
	$(VENV)/pytest -q tests/integration tests/bench

molecule:
	$(VENV)/molecule test --scenario-name default

# Opt-in: build a tiny patched kernel from the distro's kernel source (roles/kernel_build)
# and boot it under qemu - KVM when usable, else software emulation (molecule/kernel).
# The build cache stays in /var/cache/kmesh-lab/kernel: a second run does not rebuild.
test-kernel: bootstrap
	$(VENV)/pytest -q tests/unit/test_kernel_build.py
	timeout 3600 $(VENV)/molecule test --scenario-name kernel

# Opt-in: two qemu VMs (KVM when /dev/kvm opens, else software emulation) from a cached
# debootstrap image; the agent on both; a Service on VM-1 reaching VM-2 (molecule/vm).
test-vm: bootstrap
	timeout 5400 $(VENV)/molecule test --scenario-name vm

# Opt-in: headless chromium (installed if missing) screenshots a rendered report.html.
test-browser:
	RUN_DIR="$(RUN_DIR)" SCREENSHOT="$(SCREENSHOT)" tools/report_screenshot.sh

teardown:
	$(PLAYBOOK) playbooks/teardown.yml

clean: teardown
	rm -rf .venv results
