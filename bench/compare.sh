#!/usr/bin/env bash
# Builds the model benchmarks (bench/models.cpp) in Release, runs them at 1 and 2 threads with
# repetitions, and prints a markdown table of mtlm / libtorch ratios against the performance
# targets, plus training GFLOP/s against the same-run GEMM ceiling and each timed figure's spread
# over the repetitions. Takes about 5 minutes after the build on a 2-core machine with one peer,
# 11 with two. Ten repetitions of half a second: with five of 0.3 s, one run's medians on a shared
# machine moved by more than the thinner targets' margins.
#
# Usage: bash bench/compare.sh            (from anywhere; run as a user that can build)
# Environment:
#   MTLM_BENCH_BUILD_DIR  build directory (default: the bench preset's, build/bench)
#   MTLM_BENCH_THREADS    thread counts to run (default "1 2")
#   MTLM_BENCH_REPS       repetitions per benchmark, the table uses medians (default 10)
#   MTLM_BENCH_MIN_TIME   seconds per repetition (default 0.5)
#   MTLM_BENCH_BLAS       which OpenBLAS libtorch loads: openmp (default when installed),
#                         pthread, or system (whatever the alternatives system provides)
#   MTLM_BENCH_SKIP_BUILD set to 1 to use an existing build
#   MTLM_BENCH_WAIT_POLICY OpenMP wait policy for both libraries (default active; see below)
#   MTLM_BENCH_PYTORCH    a Python whose `import torch` is PyPI's current PyTorch (default:
#                         none); its libtorch is built as a second peer in $build-pytorch
#   CMAKE_BUILD_PARALLEL_LEVEL  build jobs (cmake's own variable)
# libtorch's peer is built when CMake finds libtorch (Debian: apt-get install libtorch-dev
# libopenblas0-openmp); without it the table has mtlm's figures only. With a second peer
# (python3 -m venv V && V/bin/pip install torch; MTLM_BENCH_PYTORCH=V/bin/python), each figure's
# target counts against the faster of the two, each ratio taken within its own run.
# Peak memory: each model's training runs alone in a process of the same binary; the figure is
# that process's peak resident memory above a process that loads everything and trains nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${MTLM_BENCH_BUILD_DIR:-build/bench}
read -ra thread_counts <<<"${MTLM_BENCH_THREADS:-1 2}"
reps=${MTLM_BENCH_REPS:-10}
min_time=${MTLM_BENCH_MIN_TIME:-0.5}
blas=${MTLM_BENCH_BLAS:-openmp}

pytorch_build=$build-pytorch
if [ "${MTLM_BENCH_SKIP_BUILD:-0}" != 1 ]; then
  if [ "$build" = build/bench ]; then
    cmake --preset bench >/dev/null
  else
    cmake --preset bench -B "$build" >/dev/null
  fi
  cmake --build "$build" --target mtlm_bench_models
  if [ -n "${MTLM_BENCH_PYTORCH:-}" ]; then
    # Every path pinned to the wheel: CMake's default search would otherwise mix in Debian's
    # libtorch. The wheel's CUDA libraries resolve their own dependencies at run time.
    torch_root=$("$MTLM_BENCH_PYTORCH" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
    cmake --preset bench -B "$pytorch_build" -DMTLM_CUDA=OFF \
      -DCMAKE_PREFIX_PATH="$torch_root/share/cmake" -DTorch_DIR="$torch_root/share/cmake/Torch" \
      -DCaffe2_DIR="$torch_root/share/cmake/Caffe2" -DTORCH_LIBRARY="$torch_root/lib/libtorch.so" \
      -Dc10_LIBRARY="$torch_root/lib/libc10.so" -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined \
      >/dev/null
    cmake --build "$pytorch_build" --target mtlm_bench_models
  fi
fi
binary=$build/bench/mtlm_bench_models
[ -x "$binary" ] || { echo "compare.sh: $binary was not built" >&2; exit 1; }
binaries=("$binary")
if [ -n "${MTLM_BENCH_PYTORCH:-}" ]; then
  [ -x "$pytorch_build/bench/mtlm_bench_models" ] ||
    { echo "compare.sh: $pytorch_build/bench/mtlm_bench_models was not built" >&2; exit 1; }
  binaries+=("$pytorch_build/bench/mtlm_bench_models")
fi

# OpenMP's wait policy, the same for both libraries (one process). Active (spinning) is what both
# are at their best with on a quiet machine: measured here, passive cut libtorch 2.15's 2-thread
# Model T inference from 124k to 21k tokens/s (mtlm's from 84k to 56k). On a machine shared with
# other work, spinning threads collapse instead; then 2-thread figures mean little either way.
export OMP_WAIT_POLICY=${MTLM_BENCH_WAIT_POLICY:-active}
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "compare.sh: load average $load: other work is running, so the 2-thread figures (and" \
    "the peer's most) will be low; measure on a quiet machine" >&2
fi
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
# A shared machine's speed drifts within minutes (15-25% here between runs of one binary). The
# repetitions of every benchmark run interleaved in random order, so mtlm's and the peer's see
# the same drift and a ratio does not hang on which of them ran in a fast minute.
for n in "${thread_counts[@]}"; do
  for p in "${!binaries[@]}"; do
    echo "== $n thread(s): ${binaries[$p]} (results in $out/peer$p-threads-$n.json)" >&2
    OMP_NUM_THREADS=$n "${binaries[$p]}" --threads="$n" --benchmark_repetitions="$reps" \
      --benchmark_min_time="$min_time" --benchmark_report_aggregates_only=true \
      --benchmark_enable_random_interleaving=true \
      --benchmark_format=json --benchmark_out="$out/peer$p-threads-$n.json" \
      --benchmark_out_format=json >/dev/null
    # Peak resident memory (KiB) of training alone, and of the same process training nothing.
    for run in NONE BM_J_Train/mtlm BM_J_Train/libtorch BM_T_Train/mtlm BM_T_Train/libtorch; do
      kib=$(OMP_NUM_THREADS=$n python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "${binaries[$p]}" --threads="$n" \
        --benchmark_filter="^$run\$" --benchmark_min_time="$min_time")
      echo "$run $kib" >>"$out/peer$p-threads-$n.rss"
    done
  done
done

python3 - "$out" "${#binaries[@]}" "${thread_counts[@]}" <<'EOF'
import json, os, sys

out, peers, thread_counts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
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
    """The run's context, and per benchmark name its median and its coefficient of variation."""
    with open(path) as f:
        data = json.load(f)
    values, spreads = {}, {}
    for b in data["benchmarks"]:
        aggregate = b.get("aggregate_name", "median")
        name = b.get("run_name", b["name"]).removesuffix("/real_time")
        if aggregate == "median":
            values[name] = b
        elif aggregate == "cv":
            spreads[name] = b
    return data["context"], values, spreads


def peak_mib(path):
    """Training's peak resident memory above the idle process, MiB, per benchmark name."""
    kib = dict(line.split() for line in open(path) if len(line.split()) == 2)
    idle = float(kib.pop("NONE"))
    return {name: (float(v) - idle) / 1024 for name, v in kib.items()}


def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def ratio_of(m, t, higher):
    return None if m is None or t is None else (m / t if higher else t / m)


rows, misses, contexts = [], 0, []
for n in thread_counts:
    runs = [medians(f"{out}/peer{p}-threads-{n}.json") for p in range(peers)]
    contexts = [c for c, _, _ in runs]
    memory = [peak_mib(f"{out}/peer{p}-threads-{n}.rss") for p in range(peers)]
    for key, label, counter, higher, target in figures:
        cells, ratios, spreads = [], [], []
        for p, (_, v, cv) in enumerate(runs):
            m = v.get(key + "/mtlm", {}).get(counter)
            t = v.get(key + "/libtorch", {}).get(counter)
            r = ratio_of(m, t, higher)
            ratios.append(r)
            spreads.append(" / ".join(f"{cv[key + s][counter]:.0%}" if counter in cv.get(key + s, {}) else "-"
                                      for s in ("/mtlm", "/libtorch")))
            cells += ([fmt(m)] if p == 0 else []) + [fmt(t), "-" if r is None else f"{r:.2f}x"]
        known = [r for r in ratios if r is not None]
        worst = min(known) if known else None
        met = "-" if worst is None else ("yes" if worst >= target else "**no**")
        misses += met == "**no**"
        spread = "-" if worst is None else spreads[ratios.index(worst)]
        rows.append([label, n] + cells + [spread, f">= {target:g}x" + ("" if higher else " lower"), met])
    for model in "JT":
        cells, ratios = [], []
        for p in range(peers):
            m = memory[p].get(f"BM_{model}_Train/mtlm")
            t = memory[p].get(f"BM_{model}_Train/libtorch")
            r = ratio_of(m, t, False)
            ratios.append(r)
            cells += ([fmt(m)] if p == 0 else []) + [fmt(t), "-" if r is None else f"{r:.2f}x"]
        known = [r for r in ratios if r is not None]
        met = "-" if not known else ("yes" if min(known) >= 1.0 else "**no**")
        misses += met == "**no**"
        rows.append([f"{model} training peak memory above idle, MiB", n] + cells + ["-", ">= 1x lower", met])
    for model in "JT":
        cells = []
        share = None
        for p, (_, v, _) in enumerate(runs):
            achieved = v.get(f"BM_{model}_Train/mtlm", {}).get("gflops")
            peer = v.get(f"BM_{model}_Train/libtorch", {}).get("gflops")
            ceiling = v.get(f"BM_Gemm_Ceiling/{model}", {}).get("gflops")
            if p == 0:
                share = None if achieved is None or not ceiling else achieved / ceiling
                cells += [fmt(achieved)]
                ceiling0 = ceiling
            cells += [fmt(peer), "-" if p or share is None else f"{share:.0%} of ceiling"]
        met = "-" if share is None else ("yes" if share >= ceiling_target else "**no**")
        misses += met == "**no**"
        rows.append([f"{model} training GFLOP/s vs GEMM ceiling ({fmt(ceiling0)})", n] + cells +
                    ["-", f">= {ceiling_target:.0%}", met])

names = [c.get("libtorch", "libtorch") for c in contexts]
header = ["figure", "threads", "mtlm"]
for name in names:
    header += [f"libtorch {name.split()[0]}", "ratio"]
header += ["cv mtlm / peer", "target", "met?"]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for r in rows:
    print("| " + " | ".join(str(c) for c in r) + " |")
print()
c = contexts[0]
print(f"- machine: {c.get('num_cpus')} CPUs at {c.get('mhz_per_cpu')} MHz, load average "
      f"{', '.join(f'{x:.2f}' for x in c.get('load_avg', []))} at the start")
for c in contexts:
    print(f"- libtorch {c.get('libtorch', 'not built')}: BLAS {c.get('libtorch_blas', '-')}; "
          f"{c.get('libtorch_parallel', '')[:160]}")
print(f"- FLOPs per token (training, analytic, matrix products only): {contexts[0].get('flops_per_token_train')}")
print(f"- medians of the repetitions; each ratio within one run; with two peers the target counts "
      f"against the faster; JSON in {out}")
print("- cv mtlm / peer: each one's coefficient of variation (standard deviation / mean) over the "
      "repetitions, in the pass whose ratio counts; a ratio nearer its target than these could fall "
      "on the other side in another run")
print(f"- targets missed: {misses}")
EOF
