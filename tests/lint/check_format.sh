#!/usr/bin/env bash
# Fails, listing the files, when any C++ or CUDA file of the tree is not what the repo's
# .clang-format produces. Usage: check_format.sh REPO_ROOT   (fix with: clang-format -i FILE...)
set -euo pipefail
root=${1:?usage: check_format.sh REPO_ROOT}
cd "$root"
command -v clang-format >/dev/null || { echo "clang-format is not installed (apt-get install clang-format)"; exit 1; }
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
  'runtime/*' 'router/*' 'model/*' 'ranks/*' 'tests/*' | grep -E '\.(cpp|hpp|cu|cuh)$' || true)
bad=()
for f in "${files[@]}"; do
  [[ -f $f ]] || continue
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  printf 'not formatted: %s\n' "${bad[@]}"
  echo "${#bad[@]} of ${#files[@]} files differ from .clang-format ($(clang-format --version | head -1)); run clang-format -i on them"
  exit 1
fi
echo "all ${#files[@]} C++/CUDA files formatted"
