# Racing creators of one repository, sourced by the tests that need them
# (after lib.sh).  FERRY_TEST_STOP_AT=init makes `ferry init` stop itself
# (SIGSTOP) right after it found no config: N of them are started, each is
# waited for until it has stopped there, and all are released at once, so
# every one of them is past the check when the first writes its config.

# race_init N DIR ARGS...: N `ferry init ARGS...` released together.  Leaves
# DIR/rc.I, DIR/out.I, DIR/err.I for each, and RACE_WON (how many exited 0).
race_init() {
  local n=$1 dir=$2 i pids=()
  shift 2
  mkdir -p "$dir"
  for ((i = 0; i < n; i++)); do
    FERRY_TEST_STOP_AT=init "$FERRY" init "$@" >"$dir/out.$i" 2>"$dir/err.$i" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait_stopped "$i"; done
  for i in "${pids[@]}"; do kill -CONT "$i"; done
  RACE_WON=0
  for ((i = 0; i < n; i++)); do
    local rc=0
    wait "${pids[$i]}" || rc=$?
    echo "$rc" > "$dir/rc.$i"
    [ "$rc" = 0 ] && RACE_WON=$((RACE_WON + 1))
    if grep -q "AddressSanitizer\|runtime error" "$dir/err.$i"; then cat "$dir/err.$i" >&2; fail "init $i: sanitizer report"; fi
  done
  return 0
}

# race_losers_ok N DIR: every creator that did not win exited 1 with one line
# saying the repository already exists.
race_losers_ok() {
  local n=$1 dir=$2 i
  for ((i = 0; i < n; i++)); do
    [ "$(cat "$dir/rc.$i")" = 0 ] && continue
    [ "$(cat "$dir/rc.$i")" = 1 ] || fail "init $i exited $(cat "$dir/rc.$i"): $(cat "$dir/err.$i")"
    [ "$(wc -l < "$dir/err.$i")" = 1 ] && grep -q "a repository already exists at" "$dir/err.$i" ||
      fail "init $i lost without saying so: $(cat "$dir/err.$i")"
  done
}
