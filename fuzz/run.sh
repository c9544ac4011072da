#!/usr/bin/env bash
# Fuzzes identityd with cargo-fuzz (libFuzzer + AddressSanitizer) on the stable toolchain.
#
#   fuzz/run.sh                                  every target, FUZZ_SECONDS (600) each
#   FUZZ_SECONDS=60 fuzz/run.sh request_path     the named targets only
#
# Exits non-zero if any target fails (a crash, a broken invariant, a timeout or an
# out-of-memory); the input is saved under fuzz/artifacts/<target>/. See docs/fuzzing.md.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir"
seconds="${FUZZ_SECONDS:-600}"
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, sancov); RUSTC_BOOTSTRAP lets
# the stable compiler accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

# Seeds: a few valid inputs per target, written only into an empty corpus.
seed() { # seed TARGET NAME BYTES (printf format)
  mkdir -p "corpus/$1"
  # shellcheck disable=SC2059
  printf "$3" >"corpus/$1/seed-$2"
}
key="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" # 43 base64url characters
jwt="eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"
for target in "${targets[@]}"; do
  [ -n "$(ls -A "corpus/$target" 2>/dev/null)" ] && continue
  case "$target" in
    authorization_header)
      seed "$target" basic 'Basic YWxpY2U6dG9r'
      seed "$target" basic-api "Basic $(printf 'alice:idt_api_%s' "$key" | base64 -w0)"
      seed "$target" bearer "Bearer idt_app_$key"
      seed "$target" jwt "JWT $jwt"
      seed "$target" other 'Digest username="a"'
      ;;
    basic_decoding)
      seed "$target" plain 'alice:tok'
      seed "$target" api "alice:idt_api_$key"
      seed "$target" colons 'a:b:c'
      ;;
    credential_dispatch)
      seed "$target" raw '\000Basic YWxpY2U6dG9r'
      seed "$target" api "\\001alice:idt_api_$key"
      seed "$target" app "\\002idt_app_$key"
      seed "$target" nx "\\002idt_nx_$key"
      seed "$target" bearer-jwt "\\002$jwt"
      seed "$target" jwt "\\003$jwt"
      ;;
    request_path)
      seed "$target" orders 'GET\n/api/v1/orders/1'
      seed "$target" query 'POST\n/api/v1/orders/1/items?x=1'
      seed "$target" slash 'HEAD\n/api/v1/customers/'
      seed "$target" encoded 'GET\n/api/v1/orders/%%c3%%a9'
      seed "$target" decrypt 'GET\n/api/v1/credit_cards/1/decrypted'
      ;;
  esac
done

dict_for() {
  case "$1" in
    request_path) echo "$fuzz_dir/dicts/request_path.dict" ;;
    *) echo "$fuzz_dir/dicts/authorization.dict" ;;
  esac
}

# Build once, then run the built binaries: `cargo fuzz run` would rebuild before every
# target, so edits made meanwhile would mix versions in one session.
host="$(rustc -vV | sed -n 's/^host: //p')"
build=(cargo fuzz build --fuzz-dir "$fuzz_dir" --target "$host" --target-dir "$fuzz_dir/target")
if [ "$#" -eq 0 ]; then
  "${build[@]}"
else
  for target in "${targets[@]}"; do "${build[@]}" "$target"; done
fi

# What `cargo fuzz run` sets for AddressSanitizer.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"
failed=()
for target in "${targets[@]}"; do
  echo "== $target: ${seconds}s"
  mkdir -p "artifacts/$target"
  if ! "$fuzz_dir/target/$host/release/$target" \
    -artifact_prefix="$fuzz_dir/artifacts/$target/" \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -dict="$(dict_for "$target")" "$fuzz_dir/corpus/$target"; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]}; inputs in fuzz/artifacts/<target>/" >&2
  exit 1
fi
echo "fuzzing passed: ${targets[*]} (${seconds}s each)"
