// @brief MTLM_UNROLL: asks the compiler to unroll the loop that follows completely. The register
// tiles of the CPU kernels need it for their accumulators to live in registers.
#pragma once

// (nvcc's front end knows neither spelling in host code; there the host compiler's -O3 decides.)
#if defined(__CUDACC__)
#define MTLM_UNROLL
#elif defined(__clang__)
#define MTLM_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define MTLM_UNROLL _Pragma("GCC unroll 16")
#else
#define MTLM_UNROLL
#endif
