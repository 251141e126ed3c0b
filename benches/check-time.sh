#!/usr/bin/env bash
# Compile-time cost of thing-model bindings: `cargo check` of a generated 300-property model
# and of the same model written by hand with #[derive(ThingModel)], against an equivalent
# hand-written serde struct (the baseline), all measured in the same run.
#
#   bash benches/check-time.sh [RUNS]      (default 5 runs of each, interleaved)
#
# Both crates are built once first so that dependencies are cached; each measured run then
# touches the crate's source and times `cargo check` of that crate alone. Prints the median
# of each and the ratios to the serde baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
runs=${1:-5}
work="$root/target/check-time"
rm -rf "$work/generated" "$work/serde" "$work/derived"
mkdir -p "$work/generated/src" "$work/serde/src" "$work/derived/src"

# --- a 300-property model, cycling through the scalar types --------------------------------
model="$work/model-300.json"
{
  echo '{"properties":['
  for i in $(seq 0 299); do
    case $((i % 7)) in
      0) dt='{"type":"int","specs":{"min":"0","max":"1000","step":"1","unit":"s"}}' ;;
      1) dt='{"type":"float","specs":{"min":"-50","max":"50","step":"0.1","unit":"°C"}}' ;;
      2) dt='{"type":"double","specs":{"min":"0","max":"99999"}}' ;;
      3) dt='{"type":"bool","specs":{"0":"off","1":"on"}}' ;;
      4) dt='{"type":"enum","specs":{"0":"low","1":"mid","2":"high"}}' ;;
      5) dt='{"type":"text","specs":{"length":"32"}}' ;;
      6) dt='{"type":"date","specs":{}}' ;;
    esac
    access=$([ $((i % 2)) -eq 0 ] && echo rw || echo r)
    sep=$([ "$i" -lt 299 ] && echo , || true)
    echo "{\"identifier\":\"p$i\",\"name\":\"Property $i\",\"accessMode\":\"$access\",\"dataType\":$dt}$sep"
  done
  echo ']}'
} > "$model"

cargo build -q -p x-codegen --bin x-codegen
"$root/target/debug/x-codegen" rust "$model" --name Big -o "$work/generated/src/lib.rs"

cat > "$work/generated/Cargo.toml" <<TOML
[package]
name = "check-time-generated"
version = "0.0.0"
edition = "2024"
[dependencies]
x-sdk = { path = "$root" }
[workspace]
TOML

# --- the hand-written equivalent: one serde struct with the same 300 fields ---------------
{
  echo 'use serde::{Deserialize, Serialize};'
  echo '#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]'
  echo 'pub enum Level { #[default] Low, Mid, High }'
  echo '#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]'
  echo 'pub struct Big {'
  for i in $(seq 0 299); do
    case $((i % 7)) in
      0) ty=i32 ;; 1) ty=f32 ;; 2) ty=f64 ;; 3) ty=bool ;; 4) ty=Level ;; 5) ty=String ;; 6) ty=i64 ;;
    esac
    echo "    #[serde(rename = \"p$i\")] pub p$i: $ty,"
  done
  echo '}'
} > "$work/serde/src/lib.rs"

cat > "$work/serde/Cargo.toml" <<TOML
[package]
name = "check-time-serde"
version = "0.0.0"
edition = "2024"
[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
[workspace]
TOML

# --- the same model written by hand with the derive ------------------------------------
{
  echo 'use x_sdk::model::Date;'
  echo 'use x_sdk::{ThingEnum, ThingModel};'
  echo '#[derive(Debug, Clone, Copy, PartialEq, Default, ThingEnum)]'
  echo 'pub enum Level { #[default] #[thing(label = "low")] Low, #[thing(label = "mid")] Mid, #[thing(label = "high")] High }'
  echo '#[derive(Debug, Clone, PartialEq, Default, ThingModel)]'
  echo 'pub struct Big {'
  for i in $(seq 0 299); do
    access=$([ $((i % 2)) -eq 0 ] && echo rw || echo r)
    case $((i % 7)) in
      0) ty=i32; spec=', min = 0, max = 1000, step = 1, unit = "s"' ;;
      1) ty=f32; spec=', min = -50, max = 50, step = 0.1, unit = "°C"' ;;
      2) ty=f64; spec=', min = 0, max = 99999' ;;
      3) ty=bool; spec='' ;;
      4) ty=Level; spec='' ;;
      5) ty=String; spec=', length = 32' ;;
      6) ty=Date; spec='' ;;
    esac
    echo "    #[thing(access = \"$access\"$spec)] pub p$i: $ty,"
  done
  echo '}'
} > "$work/derived/src/lib.rs"

cat > "$work/derived/Cargo.toml" <<TOML
[package]
name = "check-time-derived"
version = "0.0.0"
edition = "2024"
[dependencies]
x-sdk = { path = "$root" }
[workspace]
TOML

export CARGO_TARGET_DIR="$work/target"
# Full checks of the crate each time: incremental reuse would hide the cost being measured.
export CARGO_INCREMENTAL=0
for crate in generated derived serde; do
  (cd "$work/$crate" && cargo check -q)
done

now() { date +%s.%N; }
declare -a gen_times derived_times serde_times
for _ in $(seq 1 "$runs"); do
  for crate in generated derived serde; do
    touch "$work/$crate/src/lib.rs"
    start=$(now)
    (cd "$work/$crate" && cargo check -q)
    end=$(now)
    t=$(echo "$end - $start" | awk '{print $1 - $3}')
    case $crate in
      generated) gen_times+=("$t") ;;
      derived) derived_times+=("$t") ;;
      serde) serde_times+=("$t") ;;
    esac
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
g=$(median "${gen_times[@]}")
d=$(median "${derived_times[@]}")
s=$(median "${serde_times[@]}")
echo "generated: $(wc -l < "$work/generated/src/lib.rs") lines; cargo check median ${g}s over ${runs} runs (${gen_times[*]})"
echo "derived:   $(wc -l < "$work/derived/src/lib.rs") lines; cargo check median ${d}s over ${runs} runs (${derived_times[*]})"
echo "serde:     $(wc -l < "$work/serde/src/lib.rs") lines; cargo check median ${s}s over ${runs} runs (${serde_times[*]})"
echo "ratio generated/serde: $(awk -v a="$g" -v b="$s" 'BEGIN {printf "%.2f", a / b}')"
echo "ratio derived/serde:   $(awk -v a="$d" -v b="$s" 'BEGIN {printf "%.2f", a / b}')"
