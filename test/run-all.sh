#!/usr/bin/env bash
# Runs every suite and prints one closing line "N passed, N failed[, N skipped]".
#   unit           in-process tests and the launcher against a fake runc
#   hyperbox       hyperbox-only integration tests (real runc, kernel, Podman, containerd)
#   runtime x2     the runtime suite against plain runc (to check the tests) and hyperbox-runc
# Under CI=true a test that would skip for a missing prerequisite fails instead.
set -uo pipefail
cd "$(dirname "$0")/.."
unset NODE_EXTRA_CA_CERTS   # adds ~70 ms to every Node start; Podman and containerd do not set it

tap=(node_modules/.bin/tap --disable-coverage --reporter=tap --timeout=900 --jobs=1)
runc_bin=$(command -v runc || echo /usr/sbin/runc)
logdir=$(mktemp -d /tmp/hyperbox-test-logs.XXXXXX)
passed=0 failed=0 skipped=0 broken=0

suite() { # name, env assignments..., -- globs...
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  echo "=== $name"
  env "${envs[@]}" "${tap[@]}" "$@" 2>&1 | tee "$logdir/$name.tap"
  local rc=${PIPESTATUS[0]}
  # tap's last summary comment: "# { total: N, pass: N, fail: N, skip: N }"
  local summary
  summary=$(grep -E '^# \{ total: ' "$logdir/$name.tap" | tail -1)
  if [ -z "$summary" ]; then
    echo "=== $name: no summary (runner exit $rc)"; broken=$((broken + 1)); return
  fi
  local p f s
  p=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary"); f=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
  s=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
  if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then broken=$((broken + 1)); fi
}

suite unit -- 'dist/test/{cli,oci,store,native,features,kernel,image,config-schema}/**/*.test.js'
suite hyperbox -- 'dist/test/integration/hyperbox/**/*.test.js'
suite runtime-runc HYPERBOX_TEST_RUNTIME="$runc_bin" -- 'dist/test/integration/*.test.js'
suite runtime-hyperbox HYPERBOX_TEST_RUNTIME="$PWD/build/hyperbox-runc" -- 'dist/test/integration/*.test.js'

echo "logs: $logdir"
[ "$broken" -gt 0 ] && echo "$broken suite(s) ended abnormally"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$broken" -eq 0 ]
