#!/bin/sh
# Run in the Dockerfile's venv stages: what a venv holds that nothing imports at run time.
#   - the C and Cython sources some wheels carry (uvloop's, dependency-injector's);
#   - the debugging sections of compiled modules (uvloop's alone is 13 MB with them, 2 MB
#     without); `strip --strip-debug` keeps every symbol the dynamic linker needs.
set -eu
venv=${1:?usage: slim-venv VENV}
before=$(du -sk "$venv" | cut -f1)
find "$venv" -type f \( -name '*.c' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete
find "$venv" -type f -name '*.so*' -exec strip --strip-debug {} +
echo "slim-venv: $venv from $((before / 1024)) MB to $(($(du -sk "$venv" | cut -f1) / 1024)) MB"
