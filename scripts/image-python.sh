#!/usr/bin/env bash
# Prints the path of the Python the images and Lambdas run (the version in the Dockerfiles), or
# fails naming it. Looks on PATH, then in pyenv's versions (whose shims refuse versions not
# selected by `pyenv global`, so the shim alone is not enough).
set -euo pipefail

version=$(sed -n 's/^FROM python:\([0-9.]*\)-slim.*/\1/p' "$(dirname "$0")/../app_code/files/Dockerfile")
candidates=()
command -v "python${version}" >/dev/null 2>&1 && candidates+=("$(command -v "python${version}")")
if command -v pyenv >/dev/null 2>&1; then
  for found in "$(pyenv root)"/versions/"${version}".*/bin/python"${version}"; do
    [ -x "$found" ] && candidates+=("$found")
  done
fi
for python in "${candidates[@]}"; do
  if "$python" -c 'import sys' >/dev/null 2>&1; then
    echo "$python"
    exit 0
  fi
done
echo "Python ${version} (the images' and Lambdas' version) was not found on PATH or in pyenv;" \
  "install it or run: make test-image-python IMAGE_PYTHON=/path/to/python${version}" >&2
exit 2
