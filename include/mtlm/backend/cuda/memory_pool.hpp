// @brief A caching device allocator: freed blocks go back to a per-size free list instead of to
// cudaFree, so a training loop whose shapes repeat reaches a steady state with no cudaMalloc
// (which synchronises the device) and no cudaFree at all.
//
// Sizes are rounded up to a power of two from 512 bytes, so a request reuses a block of its
// size class; blocks are never split or merged. Reuse without synchronisation is safe because
// every device operation in mtlm runs on the one stream of runtime.hpp.
#pragma once

#include "mtlm/backend/cuda/pinned_staging.hpp"
#include "mtlm/backend/cuda/runtime.hpp"

#include <bit>
#include <cstddef>
#include <mutex>
#include <span>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mtlm::cuda {

struct MemoryStats {
  std::size_t device_allocations = 0;  ///< cudaMalloc calls so far
  std::size_t bytes_reserved = 0;      ///< held from the device (in use + cached)
  std::size_t bytes_in_use = 0;
};

class MemoryPool {
 public:
  static MemoryPool& get() {
    static MemoryPool* pool = new MemoryPool;  // never destroyed, like the Context
    return *pool;
  }

  void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t size = size_class(bytes);
    std::lock_guard lock(mutex_);
    auto& free_list = free_[size];
    void* p = nullptr;
    if (!free_list.empty()) {
      p = free_list.back();
      free_list.pop_back();
    } else {
      if (cudaMalloc(&p, size) != cudaSuccess) {
        (void)cudaGetLastError();
        release_cached_locked();  // cached blocks of other sizes may make room
        MTLM_CUDA_CHECK(cudaMalloc(&p, size));
      }
      ++stats_.device_allocations;
      stats_.bytes_reserved += size;
    }
    sizes_[p] = size;
    stats_.bytes_in_use += size;
    return p;
  }

  void deallocate(void* p) {
    if (!p) return;
    std::lock_guard lock(mutex_);
    const auto it = sizes_.find(p);
    if (it == sizes_.end()) return;  // not ours: nothing sensible to do in a noexcept path
    stats_.bytes_in_use -= it->second;
    free_[it->second].push_back(p);
    sizes_.erase(it);
  }

  /// Returns every cached (unused) block to the device.
  void release_cached() {
    std::lock_guard lock(mutex_);
    release_cached_locked();
  }

  MemoryStats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

 private:
  static std::size_t size_class(std::size_t bytes) {
    return std::bit_ceil(bytes < 512 ? std::size_t{512} : bytes);
  }

  void release_cached_locked() {
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) {
        cudaFree(p);
        stats_.bytes_reserved -= size;
      }
      blocks.clear();
    }
  }

  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::unordered_map<void*, std::size_t> sizes_;
  MemoryStats stats_;
};

/// A pooled device buffer for the duration of one kernel's work (index lists, partial sums).
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t n)
      : data_(static_cast<T*>(MemoryPool::get().allocate(n * sizeof(T)))), size_(n) {}
  ~DeviceBuffer() { MemoryPool::get().deallocate(data_); }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;

  T* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  T* data_;
  std::size_t size_;
};

/// Copies a host array to a pooled device buffer, queued on the stream behind a page-locked
/// staging copy; the host array may be reused as soon as this returns.
template <class T>
DeviceBuffer<std::remove_const_t<T>> to_device(std::span<T> host) {
  DeviceBuffer<std::remove_const_t<T>> buffer(host.size());
  PinnedStaging::get().copy_to_device(buffer.data(), host.data(), host.size_bytes());
  return buffer;
}

/// Copies a device array to the host and waits for it.
template <class T>
void to_host(const T* device, std::span<T> host) {
  if (host.empty()) return;
  MTLM_CUDA_CHECK(cudaMemcpyAsync(host.data(), device, host.size_bytes(), cudaMemcpyDeviceToHost,
                                  stream()));
  synchronize();
}

}  // namespace mtlm::cuda
