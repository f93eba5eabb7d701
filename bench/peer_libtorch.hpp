// @brief The libtorch peer of the model benchmarks: Models J and T of models_spec.hpp written
// with libtorch's C++ API, compiled in its own translation unit (peer_libtorch.cpp) so that
// bench/models.cpp never sees a torch header and builds where libtorch is absent.
//
// Contract: setup() runs once, before any benchmark, with the thread count mtlm uses; it sets
// libtorch's intra-op threads (OpenMP) and the loaded BLAS's threads to the same number and
// returns what was loaded. Each benchmark function builds its model from a fixed seed, warms up
// once outside the timed loop and reports the same counters as its mtlm twin.
#pragma once

#include <benchmark/benchmark.h>

#include <string>

namespace bench_peer {

struct Info {
  std::string blas;      ///< the BLAS library file(s) mapped into the process
  std::string parallel;  ///< at::get_parallel_info(), condensed to one line
  int threads = 0;       ///< at::get_num_threads() after setup
  std::string version;   ///< libtorch version
};

Info setup(int threads);

void j_train(benchmark::State& state);
void j_latency(benchmark::State& state);
void j_infer(benchmark::State& state);
void t_train(benchmark::State& state);
void t_latency(benchmark::State& state);
void t_infer(benchmark::State& state);

}  // namespace bench_peer
