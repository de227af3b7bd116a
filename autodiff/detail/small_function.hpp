// SPDX-License-Identifier: MIT
#pragma once
// SmallFunction<R(A...), N>: a move-only std::function that stores callables of up to N bytes
// inline. Every tape node holds one VJP closure; keeping the common ones (a few captured tensors
// and sizes) out of the heap saves an allocation per recorded op.
#include <cstddef>
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
    if (ops_) ops_->move(buf_, o.buf_);
    o.ops_ = nullptr;
  }
  SmallFunction& operator=(SmallFunction&& o) noexcept {
    if (this != &o) {
      reset();
      ops_ = o.ops_;
      if (ops_) ops_->move(buf_, o.buf_);
      o.ops_ = nullptr;
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
    void (*move)(void* dst, void* src) noexcept;  // move-construct into dst, destroy src
    void (*destroy)(void*) noexcept;
  };
  template <class D>
  static constexpr bool fits = sizeof(D) <= N && alignof(D) <= alignof(std::max_align_t) &&
                               std::is_nothrow_move_constructible_v<D>;

  template <class D>
  static constexpr Ops inline_ops = {
      [](void* p, A&&... a) -> R { return (*static_cast<D*>(p))(std::forward<A>(a)...); },
      [](void* dst, void* src) noexcept {
        ::new (dst) D(std::move(*static_cast<D*>(src)));
        static_cast<D*>(src)->~D();
      },
      [](void* p) noexcept { static_cast<D*>(p)->~D(); }};
  template <class D>
  static constexpr Ops heap_ops = {
      [](void* p, A&&... a) -> R { return (**static_cast<D**>(p))(std::forward<A>(a)...); },
      [](void* dst, void* src) noexcept { *static_cast<D**>(dst) = *static_cast<D**>(src); },
      [](void* p) noexcept { delete *static_cast<D**>(p); }};

  void reset() noexcept {
    if (ops_) ops_->destroy(buf_);
    ops_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char buf_[N];
  const Ops* ops_ = nullptr;
};

}  // namespace tapegrad::detail
