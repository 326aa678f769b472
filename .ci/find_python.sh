#!/usr/bin/env bash
# Print the path of the first working Python among the versions given (best first), e.g.
#   .ci/find_python.sh 3.13 3.12 3.11
# Looks on PATH and in pyenv's versions (whose shims fail unless that version is active).
set -u
for version in "$@"; do
    candidates=("python$version")
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root 2>/dev/null)
        for path in "$root"/versions/"$version"*/bin/python"$version"; do
            [ -x "$path" ] && candidates+=("$path")
        done
    fi
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c "import sys, venv, ensurepip; assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))" >/dev/null 2>&1; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            exit 0
        fi
    done
done
echo "No working Python among: $*" >&2
exit 1
