#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs coil_copy and coil_cat on a generated file and checks both against the source.
set -eu
copy=$1
cat=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# 5 MiB plus an odd tail, so the last chunk is short.
head -c 5243917 /dev/urandom > "$dir/source"
"$copy" "$dir/source" "$dir/copy" --depth 6 --chunk 65536
cmp "$dir/source" "$dir/copy"
"$cat" "$dir/source" "$dir/copy" > "$dir/both"
cat "$dir/source" "$dir/copy" | cmp - "$dir/both"
# A missing file is an error, reported and not fatal to the others.
if "$cat" "$dir/missing" "$dir/source" > "$dir/one" 2> "$dir/err"; then
    echo "coil_cat should fail on a missing file"; exit 1
fi
grep -q 'No such file' "$dir/err"
cmp "$dir/source" "$dir/one"
if "$copy" "$dir/missing" "$dir/x" 2> "$dir/err"; then
    echo "coil_copy should fail on a missing file"; exit 1
fi
echo "examples: copy and cat verified"
