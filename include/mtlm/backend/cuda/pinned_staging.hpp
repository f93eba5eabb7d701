// @brief Page-locked staging for host-to-device copies. A copy from ordinary (pageable) host
// memory makes the CUDA runtime wait for the whole stream first, so every batch upload would
// drain the GPU's queue; staged through page-locked memory the copy is queued like a kernel
// and the host goes on issuing work.
//
// Blocks are recycled by size class once the copy that used them has completed (an event per
// block), so a training loop reaches a steady state with no new page-locked allocations.
#pragma once

#include "mtlm/backend/cuda/runtime.hpp"

#include <bit>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace mtlm::cuda {

class PinnedStaging {
 public:
  static PinnedStaging& get() {
    static PinnedStaging* staging = new PinnedStaging;  // never destroyed, like the Context
    return *staging;
  }

  /// Queues a copy of `bytes` from `host` to `device` on the stream and returns at once; `host`
  /// may be reused immediately.
  void copy_to_device(void* device, const void* host, std::size_t bytes) {
    if (bytes == 0) return;
    Block block = acquire(bytes);
    std::memcpy(block.data, host, bytes);
    MTLM_CUDA_CHECK(cudaMemcpyAsync(device, block.data, bytes, cudaMemcpyHostToDevice, stream()));
    release(block);
  }

  /// As copy_to_device, for a (rows x cols) host array into a device matrix of pitch dpitch.
  void copy_to_device_2d(void* device, std::size_t dpitch, const void* host,
                         std::size_t row_bytes, std::size_t cols) {
    const std::size_t bytes = row_bytes * cols;
    if (bytes == 0) return;
    Block block = acquire(bytes);
    std::memcpy(block.data, host, bytes);
    MTLM_CUDA_CHECK(cudaMemcpy2DAsync(device, dpitch, block.data, row_bytes, row_bytes, cols,
                                      cudaMemcpyHostToDevice, stream()));
    release(block);
  }

 private:
  struct Block {
    void* data = nullptr;
    std::size_t size = 0;
    cudaEvent_t done{};
  };

  Block acquire(std::size_t bytes) {
    const std::size_t size = std::bit_ceil(bytes < 4096 ? std::size_t{4096} : bytes);
    {
      std::lock_guard lock(mutex_);
      auto& blocks = free_[size];
      for (std::size_t i = 0; i < blocks.size(); ++i) {
        const cudaError_t state = cudaEventQuery(blocks[i].done);
        if (state == cudaSuccess) {
          Block block = blocks[i];
          blocks[i] = blocks.back();
          blocks.pop_back();
          return block;
        }
        if (state != cudaErrorNotReady) MTLM_CUDA_CHECK(state);
      }
    }
    Block block;
    block.size = size;
    MTLM_CUDA_CHECK(cudaMallocHost(&block.data, size));
    MTLM_CUDA_CHECK(cudaEventCreateWithFlags(&block.done, cudaEventDisableTiming));
    return block;
  }

  /// Back to the free list, reusable once the copy just queued has run.
  void release(const Block& block) {
    MTLM_CUDA_CHECK(cudaEventRecord(block.done, stream()));
    std::lock_guard lock(mutex_);
    free_[block.size].push_back(block);
  }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<Block>> free_;
};

}  // namespace mtlm::cuda
