#!/usr/bin/env bash
# Builds the model benchmarks (bench/models.cpp) in Release, runs them at 1 and 2 threads with
# repetitions, and prints a markdown table of mtlm / libtorch ratios against the performance
# targets, plus training GFLOP/s against the same-run GEMM ceiling. Takes about 3-5 minutes
# after the build on a 2-core machine.
#
# Usage: bash bench/compare.sh            (from anywhere; run as a user that can build)
# Environment:
#   MTLM_BENCH_BUILD_DIR  build directory (default: the bench preset's, build/bench)
#   MTLM_BENCH_THREADS    thread counts to run (default "1 2")
#   MTLM_BENCH_REPS       repetitions per benchmark, the table uses medians (default 5)
#   MTLM_BENCH_MIN_TIME   seconds per repetition (default 0.3)
#   MTLM_BENCH_BLAS       which OpenBLAS libtorch loads: openmp (default when installed),
#                         pthread, or system (whatever the alternatives system provides)
#   MTLM_BENCH_SKIP_BUILD set to 1 to use an existing build
#   CMAKE_BUILD_PARALLEL_LEVEL  build jobs (cmake's own variable)
# libtorch's peer is built when CMake finds libtorch (Debian: apt-get install libtorch-dev
# libopenblas0-openmp); without it the table has mtlm's figures only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${MTLM_BENCH_BUILD_DIR:-build/bench}
read -ra thread_counts <<<"${MTLM_BENCH_THREADS:-1 2}"
reps=${MTLM_BENCH_REPS:-5}
min_time=${MTLM_BENCH_MIN_TIME:-0.3}
blas=${MTLM_BENCH_BLAS:-openmp}

if [ "${MTLM_BENCH_SKIP_BUILD:-0}" != 1 ]; then
  if [ "$build" = build/bench ]; then
    cmake --preset bench >/dev/null
  else
    cmake --preset bench -B "$build" >/dev/null
  fi
  cmake --build "$build" --target mtlm_bench_models
fi
binary=$build/bench/mtlm_bench_models
[ -x "$binary" ] || { echo "compare.sh: $binary was not built" >&2; exit 1; }

# The peer's run-time environment. OMP_WAIT_POLICY=passive: idle OpenMP threads sleep instead
# of spinning on a machine shared with other work (both libraries use the same libgomp).
export OMP_WAIT_POLICY=passive
# glibc malloc pinned before the first allocation (the binary also calls mallopt): libtorch
# allocates per op and loses markedly when large blocks go back to the kernel every step.
export MALLOC_MMAP_THRESHOLD_=$((32 << 20)) MALLOC_TRIM_THRESHOLD_=$((256 << 20))
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
case $blas in
  openmp | pthread)
    dir=/usr/lib/$multiarch/openblas-$blas
    if [ -e "$dir/libblas.so.3" ]; then
      export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    else
      echo "compare.sh: $dir not installed (libopenblas0-$blas); using the system libblas.so.3" >&2
    fi
    ;;
  system) ;;
  *) echo "compare.sh: MTLM_BENCH_BLAS must be openmp, pthread or system" >&2; exit 1 ;;
esac
# OpenBLAS picks its kernels from the CPU model at load time; a model newer than the library
# (0.3.21 does not know Emerald Rapids, family 6 model 207) falls back to Prescott (SSE3)
# kernels, several times slower. Then name the matching kernel family explicitly.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  probe=$("$binary" --benchmark_filter=NONE 2>&1 >/dev/null || true)
  if grep -q ' Prescott ' <<<"$probe"; then
    if grep -qw avx512f /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then
      export OPENBLAS_CORETYPE=Haswell
    fi
    [ -n "${OPENBLAS_CORETYPE:-}" ] &&
      echo "compare.sh: OpenBLAS did not recognise this CPU; OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE" >&2
  fi
fi

out=$build/compare-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
for n in "${thread_counts[@]}"; do
  echo "== $n thread(s): $binary (results in $out/threads-$n.json)" >&2
  OMP_NUM_THREADS=$n "$binary" --threads="$n" --benchmark_repetitions="$reps" \
    --benchmark_min_time="$min_time" --benchmark_report_aggregates_only=true \
    --benchmark_format=json --benchmark_out="$out/threads-$n.json" \
    --benchmark_out_format=json >/dev/null
done

python3 - "$out" "${thread_counts[@]}" <<'EOF'
import json, sys

out, thread_counts = sys.argv[1], sys.argv[2:]
# figure -> (label, counter, higher is better, target ratio mtlm vs libtorch)
figures = [
    ("BM_J_Train", "J training, tokens/s", "tokens_per_second", True, 1.5),
    ("BM_J_Latency", "J latency batch 1 (16 tokens), us", "latency_us", False, 7.0),
    ("BM_J_Infer", "J inference batch 32, tokens/s", "tokens_per_second", True, 1.5),
    ("BM_T_Train", "T training, tokens/s", "tokens_per_second", True, 1.2),
    ("BM_T_Latency", "T latency batch 1 (16 tokens), us", "latency_us", False, 2.0),
    ("BM_T_Infer", "T inference batch 32, tokens/s", "tokens_per_second", True, 1.2),
]
ceiling_target = 0.60


def medians(path):
    with open(path) as f:
        data = json.load(f)
    values = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name", "median") != "median":
            continue
        name = b.get("run_name", b["name"]).removesuffix("/real_time")
        values[name] = b
    return data["context"], values


def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


rows, misses, contexts = [], 0, {}
for n in thread_counts:
    context, v = medians(f"{out}/threads-{n}.json")
    contexts[n] = context
    for key, label, counter, higher, target in figures:
        m = v.get(key + "/mtlm", {}).get(counter)
        t = v.get(key + "/libtorch", {}).get(counter)
        ratio = None if m is None or t is None else (m / t if higher else t / m)
        met = "-" if ratio is None else ("yes" if ratio >= target else "**no**")
        misses += met == "**no**"
        rows.append((label, n, fmt(m), fmt(t), "-" if ratio is None else f"{ratio:.2f}x",
                     f">= {target:g}x" + ("" if higher else " lower"), met))
    for model in "JT":
        achieved = v.get(f"BM_{model}_Train/mtlm", {}).get("gflops")
        peer = v.get(f"BM_{model}_Train/libtorch", {}).get("gflops")
        ceiling = v.get(f"BM_Gemm_Ceiling/{model}", {}).get("gflops")
        share = None if achieved is None or not ceiling else achieved / ceiling
        met = "-" if share is None else ("yes" if share >= ceiling_target else "**no**")
        misses += met == "**no**"
        rows.append((f"{model} training GFLOP/s vs GEMM ceiling ({fmt(ceiling)})", n, fmt(achieved),
                     fmt(peer), "-" if share is None else f"{share:.0%} of ceiling",
                     f">= {ceiling_target:.0%}", met))

print("| figure | threads | mtlm | libtorch | ratio | target | met? |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(str(c) for c in r) + " |")
print()
c = contexts[thread_counts[0]]
print(f"- machine: {c.get('num_cpus')} CPUs at {c.get('mhz_per_cpu')} MHz, load average "
      f"{', '.join(f'{x:.2f}' for x in c.get('load_avg', []))} at the start")
print(f"- libtorch: {c.get('libtorch', 'not built')}; BLAS: {c.get('libtorch_blas', '-')}")
print(f"- FLOPs per token (training, analytic, matrix products only): {c.get('flops_per_token_train')}")
print(f"- medians of the repetitions; JSON in {out}")
print(f"- targets missed: {misses}")
EOF
