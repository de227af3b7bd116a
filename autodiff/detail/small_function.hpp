// SPDX-License-Identifier: MIT
#pragma once
// SmallFunction<R(A...), N>: a move-only std::function that stores callables of up to N bytes
// inline. Every tape node holds one VJP closure; keeping the common ones (a few captured tensors
// and sizes) out of the heap saves an allocation per recorded op.
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace tapegrad::detail {

template <class Sig, std::size_t N>
class SmallFunction;

template <class R, class... A, std::size_t N>
class SmallFunction<R(A...), N> {
 public:
  SmallFunction() noexcept = default;
  SmallFunction(std::nullptr_t) noexcept {}  // NOLINT: like std::function

  template <class F, class D = std::decay_t<F>,
            class = std::enable_if_t<!std::is_same_v<D, SmallFunction> && std::is_invocable_r_v<R, D&, A...>>>
  SmallFunction(F&& f) {  // NOLINT: implicit, like std::function
    if constexpr (fits<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      ops_ = &inline_ops<D>;
    } else {
      *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
      ops_ = &heap_ops<D>;
    }
  }

  SmallFunction(SmallFunction&& o) noexcept : ops_(o.ops_) {
    take(o);
  }
  SmallFunction& operator=(SmallFunction&& o) noexcept {
    if (this != &o) {
      reset();
      ops_ = o.ops_;
      take(o);
    }
    return *this;
  }
  SmallFunction& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }
  SmallFunction(const SmallFunction&) = delete;
  SmallFunction& operator=(const SmallFunction&) = delete;
  ~SmallFunction() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  R operator()(A... args) const { return ops_->call(const_cast<unsigned char*>(buf_), std::forward<A>(args)...); }

 private:
  struct Ops {
    R (*call)(void*, A&&...);
    void (*move)(void* dst, void* src) noexcept;  // move-construct into dst, destroy src; null: copy the bytes
    void (*destroy)(void*) noexcept;              // null: nothing to destroy
    std::size_t bytes;                            // the closure's size, when move is null (0: empty)
  };
  template <class D>
  static constexpr bool fits = sizeof(D) <= N && alignof(D) <= alignof(std::max_align_t) &&
                               std::is_nothrow_move_constructible_v<D>;

  // A closure of plain values (what a VJP captures) is moved as bytes and needs no destructor call.
  template <class D>
  static constexpr bool trivial = std::is_trivially_copyable_v<D> && std::is_trivially_destructible_v<D>;
  template <class D>
  static constexpr Ops inline_ops = {
      [](void* p, A&&... a) -> R { return (*static_cast<D*>(p))(std::forward<A>(a)...); },
      trivial<D> ? nullptr
                 : +[](void* dst, void* src) noexcept {
                     ::new (dst) D(std::move(*static_cast<D*>(src)));
                     static_cast<D*>(src)->~D();
                   },
      trivial<D> ? nullptr : +[](void* p) noexcept { static_cast<D*>(p)->~D(); },
      std::is_empty_v<D> ? 0 : sizeof(D)};
  template <class D>
  static constexpr Ops heap_ops = {
      [](void* p, A&&... a) -> R { return (**static_cast<D**>(p))(std::forward<A>(a)...); },
      [](void* dst, void* src) noexcept { *static_cast<D**>(dst) = *static_cast<D**>(src); },
      [](void* p) noexcept { delete *static_cast<D**>(p); },
      0};

  void reset() noexcept {
    if (ops_ && ops_->destroy) ops_->destroy(buf_);
    ops_ = nullptr;
  }
  void take(SmallFunction& o) noexcept {  // ops_ already copied from o
    if (ops_) {
      if (ops_->move)
        ops_->move(buf_, o.buf_);
      else if (ops_->bytes)
        std::memcpy(buf_, o.buf_, ops_->bytes);
    }
    o.ops_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char buf_[N];
  const Ops* ops_ = nullptr;
};

}  // namespace tapegrad::detail
