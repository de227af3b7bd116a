// SPDX-License-Identifier: MIT
// The row kernels of ops/kernels/simd.hpp, one copy per ISA (the body is ops/kernels/simd_body.hpp), and the
// run-time choice among them.
//
// Every header is included at the top, before any `#pragma GCC target` region (clang: `#pragma
// clang attribute` with a target attribute): a region gives its
// ISA to every function defined inside it, and only this file's own code (internal to its
// namespace) may be compiled for AVX2 / AVX-512.
#include "ops/kernels/simd.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TAPEGRAD_SIMD_X86 1
#else
#define TAPEGRAD_SIMD_X86 0
#endif

namespace tapegrad::simd {

// ---------------------------------------------------------------- scalar (any CPU)
namespace scalar {
constexpr Isa kIsa = Isa::Scalar;
constexpr const char* kName = "scalar";
struct Ops {
  using V = float;
  using M = bool;
  using I = std::int32_t;
  static constexpr int W = 1;
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V load_first(const float* p, int n) { return n > 0 ? *p : 0.0f; }
  static void store_first(float* p, V v, int n) {
    if (n > 0) *p = v;
  }
  static M first(int n) { return n > 0; }
  static V select(M m, V a, V b) { return m ? a : b; }
  static V set1(float v) { return v; }
  static V zero() { return 0.0f; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V min(V a, V b) { return a < b ? a : b; }
  static M lt(V a, V b) { return a < b; }
  static M gt(V a, V b) { return a > b; }
  // only called on |x| <= 128.5 (exp's clamped argument) or NaN, which x86 turns into INT32_MIN
  static I round_to_int(V x) { return x != x ? INT32_MIN : static_cast<I>(std::nearbyint(x)); }
  static V to_float(I n) { return static_cast<float>(n); }
  static V scale_pow2(V p, I n) {
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(p) + (static_cast<std::uint32_t>(n) << 23));
  }
  static float hsum(V v) { return v; }
  static float hmax(V v) { return v; }
};
#include "ops/kernels/simd_body.hpp"
}  // namespace scalar

#if TAPEGRAD_SIMD_X86

// lanes < n of an int32 mask: 16 - n elements into {-1 x 16, 0 x 16}
alignas(64) constexpr std::int32_t kFirstMask[32] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                     -1, -1, -1, -1, -1, 0,  0,  0,  0,  0,  0};

// ---------------------------------------------------------------- SSE2 (baseline x86-64)
// Compiled with the build's flags (so with -march=native it may use wider encodings of the same
// 4-lane code, which is harmless: it is only chosen when asked for or when nothing wider runs).
namespace sse2 {
constexpr Isa kIsa = Isa::Sse2;
constexpr const char* kName = "sse2";
struct Ops {
  using V = __m128;
  using M = __m128;
  using I = __m128i;
  static constexpr int W = 4;
  static V load(const float* p) { return _mm_loadu_ps(p); }
  static void store(float* p, V v) { _mm_storeu_ps(p, v); }
  // n < 4 floats by 4- and 8-byte moves (a copy through a stack buffer stalls store forwarding)
  static V load_first(const float* p, int n) {
    const __m128 lo2 = n >= 2 ? _mm_loadl_pi(_mm_setzero_ps(), reinterpret_cast<const __m64*>(p)) : _mm_load_ss(p);
    return n == 3 ? _mm_movelh_ps(lo2, _mm_load_ss(p + 2)) : lo2;
  }
  static void store_first(float* p, V v, int n) {
    if (n >= 2)
      _mm_storel_pi(reinterpret_cast<__m64*>(p), v);
    else
      _mm_store_ss(p, v);
    if (n == 3) _mm_store_ss(p + 2, _mm_movehl_ps(v, v));
  }
  static M first(int n) {
    return _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kFirstMask + 16 - n)));
  }
  static V select(M m, V a, V b) { return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b)); }
  static V set1(float v) { return _mm_set1_ps(v); }
  static V zero() { return _mm_setzero_ps(); }
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static V sub(V a, V b) { return _mm_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static V max(V a, V b) { return _mm_max_ps(a, b); }
  static V min(V a, V b) { return _mm_min_ps(a, b); }
  static M lt(V a, V b) { return _mm_cmplt_ps(a, b); }
  static M gt(V a, V b) { return _mm_cmpgt_ps(a, b); }
  static I round_to_int(V x) { return _mm_cvtps_epi32(x); }
  static V to_float(I n) { return _mm_cvtepi32_ps(n); }
  static V scale_pow2(V p, I n) { return _mm_castsi128_ps(_mm_add_epi32(_mm_castps_si128(p), _mm_slli_epi32(n, 23))); }
  static float hsum(V v) {
    const V t = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
  static float hmax(V v) {
    const V t = _mm_max_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
};
#include "ops/kernels/simd_body.hpp"
}  // namespace sse2

// ---------------------------------------------------------------- AVX2 + FMA
#if defined(__clang__)  // clang has no `#pragma GCC target`; its attribute pragma does the same
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {
constexpr Isa kIsa = Isa::Avx2;
constexpr const char* kName = "avx2";
struct Ops {
  using V = __m256;
  using M = __m256;
  using I = __m256i;
  static constexpr int W = 8;
  static __m256i mask(int n) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kFirstMask + 16 - n)); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V load_first(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store_first(float* p, V v, int n) { _mm256_maskstore_ps(p, mask(n), v); }
  static M first(int n) { return _mm256_castsi256_ps(mask(n)); }
  static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V zero() { return _mm256_setzero_ps(); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static I round_to_int(V x) { return _mm256_cvtps_epi32(x); }
  static V to_float(I n) { return _mm256_cvtepi32_ps(n); }
  static V scale_pow2(V p, I n) {
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(n, 23)));
  }
  static float hsum(V v) {
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
  static float hmax(V v) {
    __m128 t = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_max_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
};
#include "ops/kernels/simd_body.hpp"
}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---------------------------------------------------------------- AVX-512F
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
// GCC 12 warns, falsely, inside its own AVX-512 headers once inlined (`__m512 __Y = __Y;` is its
// idiom for an undefined vector); CMakeLists.txt silences the same for -march=native builds.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace avx512 {
constexpr Isa kIsa = Isa::Avx512;
constexpr const char* kName = "avx512";
struct Ops {
  using V = __m512;
  using M = __mmask16;
  using I = __m512i;
  static constexpr int W = 16;
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static M first(int n) { return static_cast<M>((1u << n) - 1u); }
  static V load_first(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store_first(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V zero() { return _mm512_setzero_ps(); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static M lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static I round_to_int(V x) { return _mm512_cvtps_epi32(x); }
  static V to_float(I n) { return _mm512_cvtepi32_ps(n); }
  static V scale_pow2(V p, I n) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(n, 23)));
  }
  static float hsum(V v) {
    __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(v),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
  static float hmax(V v) {
    __m256 t8 = _mm256_max_ps(_mm512_castps512_ps256(v),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 t = _mm_max_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    t = _mm_max_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
};
#include "ops/kernels/simd_body.hpp"
}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#endif  // TAPEGRAD_SIMD_X86

// ---------------------------------------------------------------- selection

namespace {

bool cpu_runs(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
#if TAPEGRAD_SIMD_X86
    case Isa::Sse2: return true;  // part of x86-64 (and of every build of this file for x86)
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    default: return false;
#endif
  }
  return false;
}

const Kernels* table(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return &scalar::kKernels;
#if TAPEGRAD_SIMD_X86
    case Isa::Sse2: return &sse2::kKernels;
    case Isa::Avx2: return &avx2::kKernels;
    case Isa::Avx512: return &avx512::kKernels;
#else
    default: return nullptr;
#endif
  }
  return nullptr;
}

const Kernels& choose() {
  const std::vector<Isa> isas = available_isas();
  Isa pick = isas.back();
  if (const char* env = std::getenv("TAPEGRAD_SIMD")) {
    const std::string_view want(env);
    const Isa generic = TAPEGRAD_SIMD_X86 ? Isa::Sse2 : Isa::Scalar;
    for (auto [name, isa] : {std::pair{"scalar", Isa::Scalar}, std::pair{"sse2", Isa::Sse2},
                             std::pair{"generic", generic}, std::pair{"avx2", Isa::Avx2},
                             std::pair{"avx512", Isa::Avx512}})
      if (want == name && cpu_runs(isa)) pick = isa;
  }
  return *table(pick);
}

}  // namespace

const Kernels& kernels() {
  static const Kernels& k = choose();
  return k;
}

const Kernels* kernels_for(Isa isa) { return cpu_runs(isa) ? table(isa) : nullptr; }

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Sse2, Isa::Avx2, Isa::Avx512})
    if (cpu_runs(isa) && table(isa)) out.push_back(isa);
  return out;
}

}  // namespace tapegrad::simd
