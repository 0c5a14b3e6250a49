#!/usr/bin/env bash
# Wheels benchmarks/gpu_check.sh needs on the GPU machine (its image has torch, numba, numpy, tokenizers,
# pyyaml, typing-extensions, packaging, but not these): downloaded here into .whl/ (git-ignored), then carried
# with the device tool's run(carry=[".whl"]). Python 3.12 x86-64 wheels, the versions of the dev venv.
set -eu
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null || echo '/.whl/' >> "$EXCLUDE"
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 platformdirs==4.14.9
ls -la .whl
