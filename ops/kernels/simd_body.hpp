// SPDX-License-Identifier: MIT
// The row kernels of ops/kernels/simd.hpp, written once over a vector type. Not a normal header:
// ops/kernels/simd.cpp includes it once per ISA, inside that ISA's namespace (and `#pragma GCC target`
// region), after defining `struct Ops` there:
//
//   V, M, I        float vector, lane mask, int32 vector;  W lanes
//   load/store     unaligned;  load_first(p, n) zero-fills lanes >= n, store_first writes n lanes
//                  (1 <= n < W)
//   first(n)       mask of lanes < n;  select(m, a, b) = m ? a : b
//   set1 zero add sub mul fma(a, b, c) = a * b + c
//   max(a, b), min(a, b)   b when either is NaN (the x86 rule), so max(lo, x) keeps a NaN x
//   lt gt          ordered comparisons (false for NaN)
//   round_to_int to_float  round to nearest;  scale_pow2(p, n) = p * 2^n by adding n to the
//                  exponent bits (valid while the result's exponent stays in range)
//   hsum hmax      horizontal sum and max
//
// It defines kKernels (the table of ops/kernels/simd.hpp) and nothing else with external linkage.

namespace {

using V = Ops::V;
constexpr int W = Ops::W;
constexpr float kInf = __builtin_inff();

// exp(x), Cephes expf: x = n ln2 + f with n = round(x / ln2) (ln2 split in two, Cody-Waite, so
// n ln2 is exact), exp(f) = 1 + f + f^2 P(f) on |f| <= ln2 / 2, then 2^n added to the exponent.
// x is clamped to [lo, hi] first: lo is just below log(FLT_MIN), so n >= -126 and every result
// below FLT_MIN (subnormal, or -inf's 0) is flushed to exactly 0 by the final select; hi is the
// largest float whose exp is finite (n <= 128 with exp(f) < 1 there). NaN passes through (max and
// min return their second operand for NaN; NaN's integer conversion only scrambles 2^n).
[[gnu::always_inline]] inline V vexp(V x) {
  const V hi = Ops::set1(88.72283172607421875f);  // exp(hi) < FLT_MAX < exp(next float)
  const V lo = Ops::set1(-87.3365478515625f);      // < log(FLT_MIN) = -87.33654475
  const V xc = Ops::min(hi, Ops::max(lo, x));
  const Ops::I n = Ops::round_to_int(Ops::mul(xc, Ops::set1(1.44269504088896341f)));
  const V nf = Ops::to_float(n);
  V f = Ops::fma(nf, Ops::set1(-0.693359375f), xc);  // 0.693359375 has 9 bits: n * it is exact
  f = Ops::fma(nf, Ops::set1(2.12194440e-4f), f);     // ln2 = 0.693359375 - 2.12194440e-4
  V p = Ops::set1(1.9875691500e-4f);
  p = Ops::fma(p, f, Ops::set1(1.3981999507e-3f));
  p = Ops::fma(p, f, Ops::set1(8.3334519073e-3f));
  p = Ops::fma(p, f, Ops::set1(4.1665795894e-2f));
  p = Ops::fma(p, f, Ops::set1(1.6666665459e-1f));
  p = Ops::fma(p, f, Ops::set1(5.0000001201e-1f));
  const V y = Ops::add(Ops::fma(p, Ops::mul(f, f), f), Ops::set1(1.0f));
  V r = Ops::scale_pow2(y, n);
  r = Ops::select(Ops::lt(r, Ops::set1(1.17549435e-38f)), Ops::zero(), r);  // FLT_MIN
  return Ops::select(Ops::gt(x, hi), Ops::set1(kInf), r);
}

// The last n < W elements, other lanes set to `fill` (-inf for max and exp, 0 for sums).
[[gnu::always_inline]] inline V load_tail(const float* p, std::int64_t n, float fill) {
  const int k = static_cast<int>(n);
  return Ops::select(Ops::first(k), Ops::load_first(p, k), Ops::set1(fill));
}

// NaN may or may not win (the caller detects NaN through the exp-sum, or has_nan).
float row_max(const float* x, std::int64_t K) {
  V m0 = Ops::set1(-kInf), m1 = m0;
  std::int64_t i = 0;
  for (; i + 2 * W <= K; i += 2 * W) {
    m0 = Ops::max(m0, Ops::load(x + i));
    m1 = Ops::max(m1, Ops::load(x + i + W));
  }
  if (i + W <= K) {
    m0 = Ops::max(m0, Ops::load(x + i));
    i += W;
  }
  if (i < K) m1 = Ops::max(m1, load_tail(x + i, K - i, -kInf));
  return Ops::hmax(Ops::max(m0, m1));
}

bool has_nan(const float* x, std::int64_t K) {
  for (std::int64_t i = 0; i < K; ++i)
    if (x[i] != x[i]) return true;
  return false;
}

void fill(float* y, float v, std::int64_t K) {
  for (std::int64_t i = 0; i < K; ++i) y[i] = v;
}

// sum of exp(x - m), also stored into e when Store. One pass, two accumulators.
template <bool Store>
float exp_sum(const float* x, float m, float* e, std::int64_t K) {
  const V vm = Ops::set1(m);
  V s0 = Ops::zero(), s1 = Ops::zero();
  std::int64_t i = 0;
  for (; i + 2 * W <= K; i += 2 * W) {
    const V a = vexp(Ops::sub(Ops::load(x + i), vm));
    const V b = vexp(Ops::sub(Ops::load(x + i + W), vm));
    if constexpr (Store) {
      Ops::store(e + i, a);
      Ops::store(e + i + W, b);
    }
    s0 = Ops::add(s0, a);
    s1 = Ops::add(s1, b);
  }
  if (i + W <= K) {
    const V a = vexp(Ops::sub(Ops::load(x + i), vm));
    if constexpr (Store) Ops::store(e + i, a);
    s0 = Ops::add(s0, a);
    i += W;
  }
  if (i < K) {  // -inf in the unused lanes: exp gives 0 there
    const V a = vexp(Ops::sub(load_tail(x + i, K - i, -kInf), vm));
    if constexpr (Store) Ops::store_first(e + i, a, static_cast<int>(K - i));
    s1 = Ops::add(s1, a);
  }
  return Ops::hsum(Ops::add(s0, s1));
}

// y *= c
void scale(float* y, float c, std::int64_t K) {
  const V vc = Ops::set1(c);
  std::int64_t i = 0;
  for (; i + W <= K; i += W) Ops::store(y + i, Ops::mul(Ops::load(y + i), vc));
  if (i < K) {
    const int k = static_cast<int>(K - i);
    Ops::store_first(y + i, Ops::mul(Ops::load_first(y + i, k), vc), k);
  }
}

// y = (x - m) - log_s: subtracting m first keeps log_s when |m| dwarfs it (m = 1e30)
void shifted_log(const float* x, float m, float log_s, float* y, std::int64_t K) {
  const V vm = Ops::set1(m), vl = Ops::set1(log_s);
  std::int64_t i = 0;
  for (; i + W <= K; i += W) Ops::store(y + i, Ops::sub(Ops::sub(Ops::load(x + i), vm), vl));
  if (i < K) {
    const int k = static_cast<int>(K - i);
    Ops::store_first(y + i, Ops::sub(Ops::sub(Ops::load_first(x + i, k), vm), vl), k);
  }
}

float sum(const float* a, std::int64_t K) {
  V s0 = Ops::zero(), s1 = Ops::zero();
  std::int64_t i = 0;
  for (; i + 2 * W <= K; i += 2 * W) {
    s0 = Ops::add(s0, Ops::load(a + i));
    s1 = Ops::add(s1, Ops::load(a + i + W));
  }
  if (i + W <= K) {
    s0 = Ops::add(s0, Ops::load(a + i));
    i += W;
  }
  if (i < K) s1 = Ops::add(s1, Ops::load_first(a + i, static_cast<int>(K - i)));
  return Ops::hsum(Ops::add(s0, s1));
}

float dot(const float* a, const float* b, std::int64_t K) {
  V s0 = Ops::zero(), s1 = Ops::zero();
  std::int64_t i = 0;
  for (; i + 2 * W <= K; i += 2 * W) {
    s0 = Ops::fma(Ops::load(a + i), Ops::load(b + i), s0);
    s1 = Ops::fma(Ops::load(a + i + W), Ops::load(b + i + W), s1);
  }
  if (i + W <= K) {
    s0 = Ops::fma(Ops::load(a + i), Ops::load(b + i), s0);
    i += W;
  }
  if (i < K) {
    const int k = static_cast<int>(K - i);
    s1 = Ops::fma(Ops::load_first(a + i, k), Ops::load_first(b + i, k), s1);
  }
  return Ops::hsum(Ops::add(s0, s1));
}

// ---- the table's entries ----

std::int64_t softmax_forward(const float* x, float* y, std::int64_t rows, std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, x += K, y += K) {
    const float m = row_max(x, K);
    if (!(m < kInf)) return r;
    if (m == -kInf) {
      if (has_nan(x, K)) return r;
      fill(y, 0.0f, K);
      continue;
    }
    const float s = exp_sum<true>(x, m, y, K);
    if (!(s >= 1.0f)) return r;  // NaN somewhere (the max entry alone gives exp(0) = 1)
    scale(y, 1.0f / s, K);
  }
  return -1;
}

std::int64_t log_softmax_forward(const float* x, float* y, float* e, float* inv_s, std::int64_t rows,
                                 std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, x += K, y += K) {
    const float m = row_max(x, K);
    if (!(m < kInf)) return r;
    if (m == -kInf) {
      if (has_nan(x, K)) return r;
      fill(y, -kInf, K);
      if (e) {
        fill(e + r * K, 0.0f, K);
        inv_s[r] = 0.0f;
      }
      continue;
    }
    const float s = e ? exp_sum<true>(x, m, e + r * K, K) : exp_sum<false>(x, m, nullptr, K);
    if (!(s >= 1.0f)) return r;
    shifted_log(x, m, std::log(s), y, K);
    if (e) inv_s[r] = 1.0f / s;
  }
  return -1;
}

std::int64_t logsumexp_forward(const float* x, float* lse, std::int64_t rows, std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, x += K) {
    const float m = row_max(x, K);
    if (!(m < kInf)) return r;
    if (m == -kInf) {
      if (has_nan(x, K)) return r;
      lse[r] = -kInf;
      continue;
    }
    const float s = exp_sum<false>(x, m, nullptr, K);
    if (!(s >= 1.0f)) return r;
    lse[r] = m + std::log(s);
  }
  return -1;
}

std::int64_t exp_rows(const float* x, float* e, float* m_out, float* s_out, std::int64_t rows, std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, x += K) {
    const float m = row_max(x, K);
    if (!(m < kInf)) return r;
    m_out[r] = m;
    if (m == -kInf) {
      if (has_nan(x, K)) return r;
      if (e) fill(e + r * K, 0.0f, K);
      s_out[r] = 0.0f;
      continue;
    }
    const float s = e ? exp_sum<true>(x, m, e + r * K, K) : exp_sum<false>(x, m, nullptr, K);
    if (!(s >= 1.0f)) return r;
    s_out[r] = s;
  }
  return -1;
}

void softmax_backward(const float* y, const float* g, float* dx, std::int64_t rows, std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, y += K, g += K, dx += K) {
    const V d = Ops::set1(dot(g, y, K));
    std::int64_t i = 0;
    for (; i + W <= K; i += W) Ops::store(dx + i, Ops::mul(Ops::sub(Ops::load(g + i), d), Ops::load(y + i)));
    if (i < K) {
      const int k = static_cast<int>(K - i);
      Ops::store_first(dx + i, Ops::mul(Ops::sub(Ops::load_first(g + i, k), d), Ops::load_first(y + i, k)), k);
    }
  }
}

void log_softmax_backward(const float* e, const float* inv_s, const float* g, float* dx, std::int64_t rows,
                          std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, e += K, g += K, dx += K) {
    if (inv_s[r] == 0.0f) {  // fully masked row
      fill(dx, 0.0f, K);
      continue;
    }
    const V c = Ops::set1(-inv_s[r] * sum(g, K));
    std::int64_t i = 0;
    for (; i + W <= K; i += W) Ops::store(dx + i, Ops::fma(Ops::load(e + i), c, Ops::load(g + i)));
    if (i < K) {
      const int k = static_cast<int>(K - i);
      Ops::store_first(dx + i, Ops::fma(Ops::load_first(e + i, k), c, Ops::load_first(g + i, k)), k);
    }
  }
}

void logsumexp_backward(const float* x, const float* lse, const float* g, float* dx, std::int64_t rows,
                        std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, x += K, dx += K) {
    if (lse[r] == -kInf) {
      fill(dx, 0.0f, K);
      continue;
    }
    const float m = row_max(x, K);
    const float s = exp_sum<true>(x, m, dx, K);
    scale(dx, g[r] / s, K);
  }
}

void scale_shift_rows(float* v, const float* scale, const float* shift, std::int64_t rows, std::int64_t K) {
  for (std::int64_t r = 0; r < rows; ++r, v += K) {
    const V a = Ops::set1(scale[r]), b = Ops::set1(shift ? -shift[r] : 0.0f);
    std::int64_t i = 0;
    for (; i + W <= K; i += W) Ops::store(v + i, Ops::fma(Ops::load(v + i), a, b));
    if (i < K) {
      const int k = static_cast<int>(K - i);
      Ops::store_first(v + i, Ops::fma(Ops::load_first(v + i, k), a, b), k);
    }
  }
}

void exp_elementwise(const float* x, float* y, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + W <= n; i += W) Ops::store(y + i, vexp(Ops::load(x + i)));
  if (i < n) {
    const int k = static_cast<int>(n - i);
    Ops::store_first(y + i, vexp(Ops::load_first(x + i, k)), k);
  }
}

}  // namespace

extern const Kernels kKernels;
const Kernels kKernels = {kIsa,
                          kName,
                          softmax_forward,
                          log_softmax_forward,
                          logsumexp_forward,
                          exp_rows,
                          softmax_backward,
                          log_softmax_backward,
                          logsumexp_backward,
                          scale_shift_rows,
                          exp_elementwise};
