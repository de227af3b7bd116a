// SPDX-License-Identifier: MIT
#pragma once
// A vector whose first N elements live inside the object (a node's input edges and saved tensors:
// most ops have one or two of each, so recording them costs no allocation); more spill to one
// block from the per-thread pool. Neither copyable nor movable: nodes stay where the tape put them.
#include <cstddef>
#include <memory>
#include <new>
#include <utility>

#include "autodiff/tape.hpp"

namespace tapegrad::detail {

template <class T, std::size_t N>
class InlineVector {
 public:
  InlineVector() noexcept : data_(reinterpret_cast<T*>(buf_)) {}
  InlineVector(const InlineVector&) = delete;
  InlineVector& operator=(const InlineVector&) = delete;
  ~InlineVector() {
    clear();
    free_heap();
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t capacity() const noexcept { return cap_; }
  // Elements held outside the object (what it costs beyond its own sizeof).
  std::size_t heap_capacity() const noexcept { return on_heap() ? cap_ : 0; }
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }
  T& back() noexcept { return data_[size_ - 1]; }

  void reserve(std::size_t n) {
    if (n > cap_) grow(n);
  }
  template <class... A>
  T& emplace_back(A&&... args) {
    if (size_ == cap_) grow(2 * cap_);
    T* p = ::new (static_cast<void*>(data_ + size_)) T(std::forward<A>(args)...);
    ++size_;
    return *p;
  }
  void push_back(const T& v) { emplace_back(v); }
  void push_back(T&& v) { emplace_back(std::move(v)); }
  // Destroys the elements; a spilled block is kept for the slot's next node (as std::vector does).
  void clear() noexcept {
    std::destroy(data_, data_ + size_);
    size_ = 0;
  }

 private:
  bool on_heap() const noexcept { return data_ != reinterpret_cast<const T*>(buf_); }
  void grow(std::size_t n) {
    T* p = PoolAllocator<T>().allocate(n);
    std::uninitialized_move(data_, data_ + size_, p);
    std::destroy(data_, data_ + size_);
    free_heap();
    data_ = p;
    cap_ = n;
  }
  void free_heap() noexcept {
    if (on_heap()) PoolAllocator<T>().deallocate(data_, cap_);
  }

  T* data_;
  std::size_t size_ = 0;
  std::size_t cap_ = N;
  alignas(T) unsigned char buf_[N * sizeof(T)];
};

}  // namespace tapegrad::detail
