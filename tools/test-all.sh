#!/bin/sh
# `make test`: the three tiers (Rust, busted, end-to-end against a real Prosody), each
# run even if an earlier one failed; ends with one line "N passed, N failed".
cd "$(dirname "$0")/.."
LUA_VERSION="${LUA_VERSION:-5.4}"
LOG_DIR="${TEST_LOG_DIR:-build/test-logs}"
mkdir -p "$LOG_DIR"
passed=0
failed=0
status=0

count() { # file, regex with one number group → sum
	grep -oE "$2" "$1" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'
}

# Rust unit and integration tests.
echo "=== rust"
if ! make -s test-rust LUA_VERSION="$LUA_VERSION" >"$LOG_DIR/rust.log" 2>&1; then status=1; fi
grep -E "^test result|FAILED|panicked" "$LOG_DIR/rust.log"
p=$(count "$LOG_DIR/rust.log" '[0-9]+ passed;')
f=$(count "$LOG_DIR/rust.log" '[0-9]+ failed;')
passed=$((passed + p)); failed=$((failed + f))
[ "$status" = 0 ] || [ "$f" != 0 ] || failed=$((failed + 1))

# Busted specs of the glue and the plugin.
echo "=== busted"
s=0
make -s test-spec LUA_VERSION="$LUA_VERSION" >"$LOG_DIR/busted.log" 2>&1 || s=1
tail -n 30 "$LOG_DIR/busted.log" | grep -vE '^[+-]*$'
p=$(count "$LOG_DIR/busted.log" '[0-9]+ success')
f=$(( $(count "$LOG_DIR/busted.log" '[0-9]+ failure') + $(count "$LOG_DIR/busted.log" '[0-9]+ error') ))
passed=$((passed + p)); failed=$((failed + f))
if [ "$s" != 0 ]; then status=1; [ "$f" != 0 ] || failed=$((failed + 1)); fi

# End-to-end against a real Prosody.
echo "=== e2e"
s=0
make -s test-e2e >"$LOG_DIR/e2e.log" 2>&1 || s=1
grep -E "PASSED|FAILED|ERROR|passed|failed|error" "$LOG_DIR/e2e.log" | tail -n 40
p=$(tail -n 3 "$LOG_DIR/e2e.log" | count /dev/stdin '[0-9]+ passed')
f=$(( $(tail -n 3 "$LOG_DIR/e2e.log" | count /dev/stdin '[0-9]+ failed') + $(tail -n 3 "$LOG_DIR/e2e.log" | count /dev/stdin '[0-9]+ errors?') ))
passed=$((passed + p)); failed=$((failed + f))
if [ "$s" != 0 ]; then status=1; [ "$f" != 0 ] || failed=$((failed + 1)); fi

echo "logs: $LOG_DIR"
echo "$passed passed, $failed failed"
exit $status
