# snn_fusion_ros developer entry points. Every target sets itself up idempotently:
#   make test   - venv + pinned deps + msg build, then ruff and the whole pytest suite
#   make demo   - same set-up, then the end-to-end demo
#   make bench  - same set-up, then every benchmark; rows land in BENCHMARKS.md
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

ROOT     := $(CURDIR)
# The venv lives outside the source tree (CMake refuses exported include dirs - numpy's - that lie
# inside the package's source directory); .venv is a symlink to it, one venv per checkout path.
VENV_HOME ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/snn_fusion_ros
VENV     := $(VENV_HOME)/venv-$(shell printf '%s' '$(ROOT)' | sha256sum | cut -c1-12)
PY       := $(VENV)/bin/python
PYVER    := 3.11
BUILD    := $(ROOT)/build
INSTALL  := $(ROOT)/install
SITE     := $(INSTALL)/lib/python$(PYVER)/site-packages
DEPS_OK  := $(VENV)/.deps-ok
MSG_OK   := $(BUILD)/.msg-ok
PYTEST_ARGS ?=

# The ROS environment that `source install/setup.bash` would give, for wheel-installed ROS 2.
export AMENT_PREFIX_PATH := $(INSTALL):$(VENV)
export CMAKE_PREFIX_PATH := $(INSTALL):$(VENV)
# The source tree first (edits take effect without reinstalling); snn_fusion_ros.msg is found in the
# install tree through the package's extended __path__.
export PYTHONPATH := $(ROOT):$(SITE)$(if $(PYTHONPATH),:$(PYTHONPATH))
export LD_LIBRARY_PATH := $(INSTALL)/lib:$(VENV)/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
export PATH := $(VENV)/bin:$(PATH)
# DDS never leaves this machine; tests give each run its own ROS_DOMAIN_ID on top of this.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup venv build install-tree test lint unit pytest env docs demo bench clean distclean colcon

setup: build

venv: $(DEPS_OK)

$(DEPS_OK): requirements.txt constraints.txt requirements-lava.txt setup.py
	@echo "== creating $(VENV) and installing pinned dependencies"
	test -x $(PY) || python$(PYVER) -m venv $(VENV)
	ln -sfn $(VENV) $(ROOT)/.venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	# lava-nc 0.10 declares Python <3.11; its own dependencies are pinned above, the package itself
	# goes in without the version gate (see README, "Lava on Python 3.11").
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python -r requirements-lava.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# rosidl messages + install tree (same layout colcon produces), against the wheel-installed ROS.
build: $(MSG_OK)

$(MSG_OK): $(DEPS_OK) CMakeLists.txt package.xml $(wildcard msg/*.msg) cmake/wheel_ros_fixups.cmake
	@echo "== building msg/ with cmake into $(INSTALL)"
	mkdir -p $(BUILD)
	cd $(BUILD) && cmake $(ROOT) -DCMAKE_INSTALL_PREFIX=$(INSTALL) -DPython3_EXECUTABLE=$(PY) \
	    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > cmake-configure.log 2>&1 \
	    || { cat cmake-configure.log; exit 1; }
	cmake --build $(BUILD) -j2 > $(BUILD)/cmake-build.log 2>&1 || { tail -50 $(BUILD)/cmake-build.log; exit 1; }
	touch $@

# Python sources, launch and config are re-copied into install/ on every run (cheap, keeps it in sync).
install-tree: $(MSG_OK)
	cmake --install $(BUILD) > $(BUILD)/cmake-install.log 2>&1 || { tail -20 $(BUILD)/cmake-install.log; exit 1; }

lint: $(DEPS_OK)
	$(VENV)/bin/ruff check snn_fusion_ros test launch setup.py

test: install-tree lint
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install-tree
	$(PY) -m pytest -m "unit" $(PYTEST_ARGS)

# `make pytest PYTEST_ARGS="test/test_x.py -k y"`: tests without lint, in the same environment.
pytest: install-tree
	$(PY) -m pytest $(PYTEST_ARGS)

# Regenerate README's parameter and message tables from the code.
docs: $(DEPS_OK)
	$(PY) -m snn_fusion_ros.docgen --write README.md

# Print the environment (eval "$$(make -s env)") to run the nodes or tools by hand.
env:
	@echo "export AMENT_PREFIX_PATH='$(AMENT_PREFIX_PATH)' CMAKE_PREFIX_PATH='$(CMAKE_PREFIX_PATH)'"
	@echo "export PYTHONPATH='$(PYTHONPATH)' LD_LIBRARY_PATH='$(LD_LIBRARY_PATH)' PATH='$(PATH)'"
	@echo "export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST RMW_IMPLEMENTATION=$(RMW_IMPLEMENTATION)"

demo: install-tree
	$(PY) -m snn_fusion_ros.cli demo

bench: install-tree
	$(PY) -m snn_fusion_ros.cli bench all --write BENCHMARKS.md

# The same package built by colcon, as a ROS user would (workspace in .colcon/).
colcon: $(DEPS_OK)
	rm -rf .colcon && mkdir -p .colcon/src && ln -s $(ROOT) .colcon/src/snn_fusion_ros
	cd .colcon && $(VENV)/bin/colcon build --cmake-args -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF

clean:
	rm -rf $(BUILD) $(INSTALL) .colcon .pytest_cache

distclean: clean
	rm -rf $(VENV)
