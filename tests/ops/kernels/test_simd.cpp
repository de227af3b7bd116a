// SPDX-License-Identifier: MIT
// The SIMD row kernels of ops/kernels/simd.hpp, every variant this CPU runs (scalar, sse2, avx2, avx512),
// called directly: the vectorised exp against std::exp in double (accuracy, -inf, underflow to
// exactly 0, overflow, NaN), every row kernel against a double-precision reference on row lengths
// around the vector widths (tails), with -inf masks and fully masked rows, writes that stay inside
// their rows, and the rows reported for NaN / +inf. The ops that use them (softmax, log_softmax,
// logsumexp, cross_entropy) are tested in test_softmax.cpp, test_loss.cpp and the parity tests;
// run those once with TAPEGRAD_SIMD=generic to cover the fallback the process would not pick.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ops/kernels/simd.hpp"
#include "testing.hpp"

using namespace tapegrad;

namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr float kMinNormal = std::numeric_limits<float>::min();

std::vector<const simd::Kernels*> variants() {
  std::vector<const simd::Kernels*> out;
  for (simd::Isa isa : simd::available_isas()) out.push_back(simd::kernels_for(isa));
  return out;
}

// |got - want| in units of the float spacing at want (want in double).
double ulps(float got, double want) {
  const float w = static_cast<float>(want);
  const double ulp = static_cast<double>(std::nextafter(w, kInfF)) - static_cast<double>(w);
  return std::abs(static_cast<double>(got) - want) / ulp;
}

// Random rows: N(0, scale) logits, and (when masked) some -inf entries and a fully masked row.
std::vector<float> random_rows(std::int64_t rows, std::int64_t K, std::uint32_t seed, bool masked) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * K));
  for (float& v : x) v = normal(gen);
  if (masked) {
    for (std::size_t i = 0; i < x.size(); i += 3) x[i] = -kInfF;
    if (rows > 1)
      for (std::int64_t k = 0; k < K; ++k) x[static_cast<std::size_t>(K + k)] = -kInfF;  // row 1
  }
  return x;
}

struct RowRef {
  double m, s;  // max, sum exp(x - m) (0 for a fully masked row)
};
RowRef row_ref(const float* x, std::int64_t K) {
  double m = -std::numeric_limits<double>::infinity();
  for (std::int64_t k = 0; k < K; ++k) m = std::max(m, static_cast<double>(x[k]));
  double s = 0;
  if (m > -std::numeric_limits<double>::infinity())
    for (std::int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(x[k]) - m);
  return {m, s};
}

// |got - want| <= atol + rtol |want|, infinities equal; the first failure, or "".
std::string close_why(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol) {
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double g = got[i], w = want[i];
    if (std::isinf(w) && g == w) continue;
    if (!(std::abs(g - w) <= atol + rtol * std::abs(w)))
      return fmt::format("element {}: {} vs {} (diff {:.3g})", i, g, w, g - w);
  }
  return "";
}

// A buffer of n floats followed by guard values that no kernel may overwrite.
struct Guarded {
  static constexpr int kGuard = 32;
  std::vector<float> v;
  explicit Guarded(std::int64_t n, float fill = 0.0f) : v(static_cast<std::size_t>(n), fill) {
    v.insert(v.end(), kGuard, 12345.0f);
  }
  float* data() { return v.data(); }
  std::vector<float> values() const { return {v.begin(), v.end() - kGuard}; }
  bool guard_intact() const {
    return std::all_of(v.end() - kGuard, v.end(), [](float g) { return g == 12345.0f; });
  }
};

const std::vector<std::int64_t> kLengths = {1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 47, 100, 1000, 4099};

}  // namespace

TEST_CASE("simd: the scalar variant always exists, and kernels() is one of the available variants", "[ops][simd]") {
  const auto isas = simd::available_isas();
  REQUIRE(!isas.empty());
  REQUIRE(isas.front() == simd::Isa::Scalar);
#if defined(__x86_64__)
  REQUIRE(std::find(isas.begin(), isas.end(), simd::Isa::Sse2) != isas.end());
#endif
  const simd::Kernels& k = simd::kernels();
  INFO("selected: " << k.name);
  REQUIRE(std::find(isas.begin(), isas.end(), k.isa) != isas.end());
  REQUIRE(simd::kernels_for(k.isa) == &k);
}

TEST_CASE("simd: exp is within 2 ulp of std::exp and exact at the edges, every variant", "[ops][simd][exp]") {
  // a dense sweep over the whole finite range, plus the edges
  std::vector<float> x;
  for (double v = -110.0; v <= 90.0; v += 0.000731) x.push_back(static_cast<float>(v));
  for (float v = -1.0f; v <= 1.0f; v += 1.0f / 4096) x.push_back(v);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, -87.3365f, -87.33654f, -87.33655f, -87.5f, -88.0f, -103.0f, -104.0f,
                  -1e30f, -3.4e38f, 88.0f, 88.72283f, 88.7228317f})
    x.push_back(v);
  for (const simd::Kernels* k : variants()) {
    INFO("variant " << k->name);
    std::vector<float> y(x.size());
    k->exp(x.data(), y.data(), static_cast<std::int64_t>(x.size()));
    double worst = 0;
    float worst_x = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(static_cast<double>(x[i]));
      if (want < kMinNormal) {
        INFO("x = " << x[i] << " exp = " << y[i]);
        REQUIRE(y[i] == 0.0f);  // subnormal results are flushed to exactly 0, never garbage
        continue;
      }
      if (want > std::numeric_limits<float>::max()) continue;  // overflow, below
      const double e = ulps(y[i], want);
      if (e > worst) worst = e, worst_x = x[i];
    }
    INFO("worst " << worst << " ulp at x = " << worst_x);
    REQUIRE(worst <= 2.0);

    const std::vector<float> edge = {-kInfF, -1e30f, -103.0f, -87.5f, 0.0f, -0.0f, 88.7228317f, 88.73f, 89.0f, 1e30f,
                                     kInfF, std::numeric_limits<float>::quiet_NaN()};
    std::vector<float> ye(edge.size());
    k->exp(edge.data(), ye.data(), static_cast<std::int64_t>(edge.size()));
    REQUIRE(ye[0] == 0.0f);
    REQUIRE(ye[1] == 0.0f);
    REQUIRE(ye[2] == 0.0f);
    REQUIRE(ye[3] == 0.0f);  // exp(-87.5) = 1.0e-38 is subnormal
    REQUIRE(ye[4] == 1.0f);  // exactly: a row's max always contributes exactly 1 to the sum
    REQUIRE(ye[5] == 1.0f);
    REQUIRE(std::isfinite(ye[6]));
    REQUIRE(ye[6] > 3.4e38f);
    REQUIRE(ye[7] == kInfF);
    REQUIRE(ye[8] == kInfF);
    REQUIRE(ye[9] == kInfF);
    REQUIRE(ye[10] == kInfF);
    REQUIRE(std::isnan(ye[11]));
  }
}

TEST_CASE("simd: exp writes exactly n values for every n (tails)", "[ops][simd][exp]") {
  for (const simd::Kernels* k : variants())
    for (std::int64_t n = 0; n <= 40; ++n) {
      INFO("variant " << k->name << " n = " << n);
      std::vector<float> x(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = -0.25f * static_cast<float>(i);
      Guarded y(n);
      k->exp(x.data(), y.data(), n);
      REQUIRE(y.guard_intact());
      for (std::int64_t i = 0; i < n; ++i) REQUIRE(ulps(y.v[static_cast<std::size_t>(i)], std::exp(-0.25 * i)) <= 2.0);
    }
}

TEST_CASE("simd: forward row kernels match a double reference, with -inf masks and fully masked rows",
          "[ops][simd][forward]") {
  const std::int64_t rows = 3;
  for (const simd::Kernels* k : variants())
    for (std::int64_t K : kLengths)
      for (bool masked : {false, true}) {
        INFO("variant " << k->name << " K = " << K << (masked ? " masked" : ""));
        const std::vector<float> x = random_rows(rows, K, static_cast<std::uint32_t>(K * 7 + masked), masked);
        const std::int64_t n = rows * K;
        std::vector<double> sm(static_cast<std::size_t>(n)), ls(sm.size()), e(sm.size()), lse(rows), inv(rows), m(rows),
            s(rows);
        for (std::int64_t r = 0; r < rows; ++r) {
          const RowRef ref = row_ref(x.data() + r * K, K);
          const bool all_masked = ref.s == 0;
          const auto R = static_cast<std::size_t>(r);
          m[R] = ref.m;
          s[R] = ref.s;
          lse[R] = all_masked ? ref.m : ref.m + std::log(ref.s);
          inv[R] = all_masked ? 0 : 1 / ref.s;
          for (std::int64_t c = 0; c < K; ++c) {
            const auto i = static_cast<std::size_t>(r * K + c);
            const double xi = x[i];
            e[i] = all_masked ? 0 : std::exp(xi - ref.m);
            sm[i] = all_masked ? 0 : e[i] / ref.s;
            ls[i] = all_masked ? -std::numeric_limits<double>::infinity() : (xi - ref.m) - std::log(ref.s);
          }
        }
        const double rtol = 4e-6 + 1e-7 * std::sqrt(static_cast<double>(K));  // x - m and sums in float

        Guarded y(n), yl(n), yl2(n), ye(n), ee(n), inv_s(rows), out(rows), mo(rows), so(rows);
        REQUIRE(k->softmax_forward(x.data(), y.data(), rows, K) == -1);
        REQUIRE(close_why(y.values(), sm, rtol, 1e-37) == "");
        REQUIRE(k->log_softmax_forward(x.data(), yl.data(), nullptr, nullptr, rows, K) == -1);
        REQUIRE(close_why(yl.values(), ls, rtol, 1e-6) == "");
        REQUIRE(k->log_softmax_forward(x.data(), yl2.data(), ye.data(), inv_s.data(), rows, K) == -1);
        REQUIRE(yl2.values() == yl.values());
        REQUIRE(close_why(ye.values(), e, rtol, 1e-37) == "");
        REQUIRE(close_why(inv_s.values(), inv, rtol, 0) == "");
        REQUIRE(k->logsumexp_forward(x.data(), out.data(), rows, K) == -1);
        REQUIRE(close_why(out.values(), lse, rtol, 1e-6) == "");
        REQUIRE(k->exp_rows(x.data(), ee.data(), mo.data(), so.data(), rows, K) == -1);
        REQUIRE(ee.values() == ye.values());
        REQUIRE(close_why(mo.values(), m, 0, 0) == "");
        REQUIRE(close_why(so.values(), s, rtol, 0) == "");
        Guarded mo2(rows), so2(rows);
        REQUIRE(k->exp_rows(x.data(), nullptr, mo2.data(), so2.data(), rows, K) == -1);
        REQUIRE(so2.values() == so.values());
        for (const Guarded* g : {&y, &yl, &yl2, &ye, &ee, &inv_s, &out, &mo, &so, &mo2, &so2}) REQUIRE(g->guard_intact());
        if (masked) {  // -inf entries: probability exactly 0
          for (std::int64_t i = 0; i < n; ++i)
            if (x[static_cast<std::size_t>(i)] == -kInfF) REQUIRE(y.v[static_cast<std::size_t>(i)] == 0.0f);
        }
      }
}

TEST_CASE("simd: backward row kernels match a double reference", "[ops][simd][backward]") {
  const std::int64_t rows = 3;
  for (const simd::Kernels* k : variants())
    for (std::int64_t K : kLengths)
      for (bool masked : {false, true}) {
        INFO("variant " << k->name << " K = " << K << (masked ? " masked" : ""));
        const std::vector<float> x = random_rows(rows, K, static_cast<std::uint32_t>(K * 11 + masked), masked);
        const std::vector<float> g = random_rows(rows, K, static_cast<std::uint32_t>(K * 13 + 5), false);
        const std::int64_t n = rows * K;
        const double rtol = 4e-6 + 1e-7 * std::sqrt(static_cast<double>(K));
        // forward values from the kernels themselves (checked above)
        Guarded y(n), yl(n), e(n), inv_s(rows), lse(rows);
        REQUIRE(k->softmax_forward(x.data(), y.data(), rows, K) == -1);
        REQUIRE(k->log_softmax_forward(x.data(), yl.data(), e.data(), inv_s.data(), rows, K) == -1);
        REQUIRE(k->logsumexp_forward(x.data(), lse.data(), rows, K) == -1);
        std::vector<float> glse = {0.5f, -2.0f, 3.0f};

        std::vector<double> dsm(static_cast<std::size_t>(n)), dls(dsm.size()), dlse(dsm.size()), dss(dsm.size());
        std::vector<float> scale = {0.25f, -1.5f, 2.0f}, shift = {0.125f, 0.0f, -0.5f};
        double scale_of_sum = 0;  // the error scale of dx, per row: |g| sums
        for (std::int64_t r = 0; r < rows; ++r) {
          const auto R = static_cast<std::size_t>(r);
          const RowRef ref = row_ref(x.data() + r * K, K);
          double dot = 0, sg = 0;
          for (std::int64_t c = 0; c < K; ++c) {
            const auto i = static_cast<std::size_t>(r * K + c);
            dot += static_cast<double>(g[i]) * static_cast<double>(y.v[i]);
            sg += g[i];
            scale_of_sum = std::max(scale_of_sum, std::abs(static_cast<double>(g[i])));
          }
          for (std::int64_t c = 0; c < K; ++c) {
            const auto i = static_cast<std::size_t>(r * K + c);
            const double p = ref.s == 0 ? 0 : std::exp(static_cast<double>(x[i]) - ref.m) / ref.s;
            dsm[i] = static_cast<double>(y.v[i]) * (g[i] - dot);
            dls[i] = ref.s == 0 ? 0 : g[i] - p * sg;
            dlse[i] = glse[R] * p;
            dss[i] = static_cast<double>(e.v[i]) * scale[R] - shift[R];
          }
        }
        Guarded dx(n), dxl(n), dxe(n), v(n);
        k->softmax_backward(y.data(), g.data(), dx.data(), rows, K);
        REQUIRE(close_why(dx.values(), dsm, rtol, 1e-6 * scale_of_sum) == "");
        k->log_softmax_backward(e.data(), inv_s.data(), g.data(), dxl.data(), rows, K);
        REQUIRE(close_why(dxl.values(), dls, rtol, 1e-6 * scale_of_sum * std::sqrt(static_cast<double>(K))) == "");
        k->logsumexp_backward(x.data(), lse.data(), glse.data(), dxe.data(), rows, K);
        REQUIRE(close_why(dxe.values(), dlse, rtol, 1e-37) == "");
        std::copy(e.v.begin(), e.v.end() - Guarded::kGuard, v.v.begin());
        k->scale_shift_rows(v.data(), scale.data(), shift.data(), rows, K);
        REQUIRE(close_why(v.values(), dss, 1e-6, 1e-7) == "");
        for (const Guarded* gd : {&dx, &dxl, &dxe, &v}) REQUIRE(gd->guard_intact());
        if (masked) {  // the fully masked row 1 gets zero gradient from log_softmax and logsumexp
          for (std::int64_t c = 0; c < K; ++c) {
            REQUIRE(dxl.v[static_cast<std::size_t>(K + c)] == 0.0f);
            REQUIRE(dxe.v[static_cast<std::size_t>(K + c)] == 0.0f);
          }
        }
      }
}

TEST_CASE("simd: forward kernels report the first row holding NaN or +inf", "[ops][simd][bad]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const simd::Kernels* k : variants())
    for (std::int64_t K : {1, 5, 8, 16, 17, 100}) {
      for (float bad : {nan, kInfF})
        for (bool rest_masked : {false, true}) {
          INFO("variant " << k->name << " K = " << K << " bad = " << bad << (rest_masked ? " in a masked row" : ""));
          std::vector<float> x = random_rows(4, K, 3, false);
          if (rest_masked) std::fill(x.begin() + 2 * K, x.begin() + 3 * K, -kInfF);
          x[static_cast<std::size_t>(2 * K + K / 2)] = bad;
          x[static_cast<std::size_t>(3 * K)] = bad;  // a later row too: the first is reported
          std::vector<float> y(x.size()), e(x.size()), r4(4), r4b(4);
          REQUIRE(k->softmax_forward(x.data(), y.data(), 4, K) == 2);
          REQUIRE(k->log_softmax_forward(x.data(), y.data(), nullptr, nullptr, 4, K) == 2);
          REQUIRE(k->log_softmax_forward(x.data(), y.data(), e.data(), r4.data(), 4, K) == 2);
          REQUIRE(k->logsumexp_forward(x.data(), r4.data(), 4, K) == 2);
          REQUIRE(k->exp_rows(x.data(), e.data(), r4.data(), r4b.data(), 4, K) == 2);
          REQUIRE(k->exp_rows(x.data(), nullptr, r4.data(), r4b.data(), 4, K) == 2);
        }
    }
}

TEST_CASE("simd: every variant computes the same softmax to a few ulp", "[ops][simd]") {
  const auto vs = variants();
  const std::int64_t rows = 4, K = 1001;
  const std::vector<float> x = random_rows(rows, K, 99, true);
  std::vector<float> ref(x.size());
  REQUIRE(vs.front()->softmax_forward(x.data(), ref.data(), rows, K) == -1);
  for (const simd::Kernels* k : vs) {
    INFO("variant " << k->name);
    std::vector<float> y(x.size());
    REQUIRE(k->softmax_forward(x.data(), y.data(), rows, K) == -1);
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(std::abs(y[i] - ref[i]) <= 1e-6f * ref[i] + 1e-37f);
  }
}
