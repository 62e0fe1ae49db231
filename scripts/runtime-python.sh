#!/usr/bin/env bash
# Prints the path of the Python the images and Lambdas run (the version in the Dockerfiles), or
# fails naming it (components/aws/interpreters.py: PATH, pyenv's versions, uv's interpreters).
# With --install, a missing one is first installed with `uv python install`.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^FROM python:\([0-9.]*\)-slim.*/\1/p' app_code/files/Dockerfile)
exec python3 -m components.aws.interpreters "$@" "$version"
