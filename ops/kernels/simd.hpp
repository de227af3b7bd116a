// SPDX-License-Identifier: MIT
#pragma once
// Row kernels for the softmax family and cross-entropy on contiguous float32 rows, compiled for
// several instruction sets and chosen once at run time (internal, not part of the user-facing API).
//
// Why: the default build targets baseline x86-64 (SSE2), where every exp is 4 lanes wide; the CPUs
// these ops mostly run on have AVX2 (8 lanes, FMA) or AVX-512 (16). The kernels are written once
// (ops/kernels/simd_body.hpp) on raw pointers with their own vectorised exp, and compiled per ISA inside
// `#pragma GCC target` regions of ops/kernels/simd.cpp. No Eigen (or any other inline library code) is
// compiled with a wider ISA: the linker could keep that copy of an inline function and run AVX
// code on a CPU without it.
//
// Layout: `rows` rows of K floats, row r at p + r * K. Per row, m = max, e = exp(x - m), s = sum e.
//   exp      Cephes-style: x = n ln2 + f, |f| <= ln2 / 2, exp(f) by a degree-7 polynomial, times
//            2^n; <= 2 ulp against the exact value. Results below the smallest normal float
//            (x < -87.3365, and -inf) are exactly 0, x > 88.7228 gives +inf, NaN stays NaN.
//   masks    a row whose max is -inf (every entry -inf) is "fully masked": softmax 0, log_softmax
//            and logsumexp -inf, e = 0, s = 0, zero gradient.
//   errors   forward kernels return the first row holding NaN or +inf (the caller throws; what was
//            written by then is unspecified), or -1.
//
// Selection: the widest ISA the CPU supports (avx512 > avx2 > sse2 on x86-64, scalar elsewhere),
// unless the environment variable TAPEGRAD_SIMD names another one: scalar, sse2, generic (the
// baseline of the build: sse2 on x86-64), avx2, avx512. A name the CPU cannot run falls back to
// the widest it can.
#include <cstdint>
#include <vector>

namespace tapegrad::simd {

enum class Isa { Scalar, Sse2, Avx2, Avx512 };

struct Kernels {
  Isa isa;
  const char* name;

  // y = exp(x - m) / s
  std::int64_t (*softmax_forward)(const float* x, float* y, std::int64_t rows, std::int64_t K);
  // y = (x - m) - log s; when e is given (the backward needs softmax), also e = exp(x - m) and
  // inv_s[r] = 1 / s (0 for fully masked rows): p = e * inv_s without another pass
  std::int64_t (*log_softmax_forward)(const float* x, float* y, float* e, float* inv_s, std::int64_t rows,
                                      std::int64_t K);
  // lse[r] = m + log s
  std::int64_t (*logsumexp_forward)(const float* x, float* lse, std::int64_t rows, std::int64_t K);
  // m[r], s[r], and e = exp(x - m) when e is given (cross_entropy)
  std::int64_t (*exp_rows)(const float* x, float* e, float* m, float* s, std::int64_t rows, std::int64_t K);

  // dx = y * (g - <g, y>)
  void (*softmax_backward)(const float* y, const float* g, float* dx, std::int64_t rows, std::int64_t K);
  // dx = g - e * (inv_s * sum g); fully masked rows (inv_s = 0) get 0
  void (*log_softmax_backward)(const float* e, const float* inv_s, const float* g, float* dx, std::int64_t rows,
                               std::int64_t K);
  // dx = g[r] * exp(x - m) / s; rows with lse = -inf get 0
  void (*logsumexp_backward)(const float* x, const float* lse, const float* g, float* dx, std::int64_t rows,
                             std::int64_t K);
  // v = v * scale[r] - shift[r] (shift may be null: 0), in place (cross_entropy's backward)
  void (*scale_shift_rows)(float* v, const float* scale, const float* shift, std::int64_t rows, std::int64_t K);

  // y = exp(x), elementwise (tests; the accuracy promised above)
  void (*exp)(const float* x, float* y, std::int64_t n);
};

// The kernels for this process (chosen on first use, see above).
const Kernels& kernels();
// The kernels for one ISA, or nullptr when this CPU (or this build) cannot run them. Tests call
// every variant directly.
const Kernels* kernels_for(Isa isa);
// Every ISA this CPU can run, narrowest first.
std::vector<Isa> available_isas();

}  // namespace tapegrad::simd
