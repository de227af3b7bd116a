// SPDX-License-Identifier: MIT
// The loss kernels (ops/kernels/loss.hpp) called directly, against values computed independently
// (numpy, float64: the script is summarised next to each case), and the fused VJPs of cross_entropy
// and nll_loss against their formula VJPs (backward without create_graph runs the kernel, with
// create_graph the tensor-op formula), in float32 and float64, with -inf masks, ignore_index,
// label smoothing, class weights and probability targets.
#include <cmath>
#include <limits>

#include "ops/kernels/loss.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor idx(const std::vector<std::int64_t>& v) {
  return from_vector(v, Shape{static_cast<std::int64_t>(v.size())});
}

// The fixture: x = [[1, 2, 3], [0, 0, 0]], targets [2, 1]. numpy: lp = x - m - log Σ exp(x - m).
Tensor fixture_x(DType d) { return tensor({{1.0, 2.0, 3.0}, {0.0, 0.0, 0.0}}, d); }

}  // namespace

TEST_CASE("loss kernels: cross_entropy_forward writes the losses, exp(x - max) and 1 / sum", "[ops][loss][kernels]") {
  for (DType d : {kFloat64, kFloat32}) {
    INFO(dtype_name(d));
    const double tol = d == kFloat64 ? 1e-15 : 1e-6;
    const Tensor x = fixture_x(d);
    kernels::ClassLossConfig c{.reduction = Reduction::None};
    Tensor out = Tensor::empty({2}, d), e = Tensor::empty({2, 3}, d), inv_s = Tensor::empty({2}, d);
    kernels::cross_entropy_forward(x, idx({2, 1}), Tensor(), c, out, &e, &inv_s);
    // numpy: [-lp[0, 2], -lp[1, 1]] = [log(1 + e^-1 + e^-2), log 3]
    REQUIRE_ALLCLOSE(out, tensor({0.40760596444438035, 1.0986122886681096}, kFloat64), tol, tol);
    REQUIRE_ALLCLOSE(e, tensor({{std::exp(-2.0), std::exp(-1.0), 1.0}, {1.0, 1.0, 1.0}}, kFloat64), tol, tol);
    REQUIRE_ALLCLOSE(inv_s, tensor({1.0 / (1.0 + std::exp(-1.0) + std::exp(-2.0)), 1.0 / 3.0}, kFloat64), tol, tol);

    // weighted, smoothed mean: w = [0.5, 1, 2], eps = 0.3, norm = w[2] + w[1] = 3
    // numpy: a = w ((1 - eps) onehot + eps / C); sum(-(a * lp)) / 3
    c = {.eps = 0.3, .norm = 3.0, .reduction = Reduction::Mean};
    Tensor mean = Tensor::empty({}, d);
    kernels::cross_entropy_forward(x, idx({2, 1}), tensor({0.5, 1.0, 2.0}, d), c, mean);
    REQUIRE_ALLCLOSE(mean, tensor(0.6889511136263935, kFloat64), tol, tol);

    // probability targets y = [[0.2, 0.3, 0.5], [1, 0, 0]], eps = 0.3, sum
    c = {.eps = 0.3, .reduction = Reduction::Sum, .prob = true};
    Tensor total = Tensor::empty({}, d);
    kernels::cross_entropy_forward(x, tensor({{0.2, 0.3, 0.5}, {1.0, 0.0, 0.0}}, d), Tensor(), c, total);
    REQUIRE_ALLCLOSE(total, tensor(2.2962182531124897, kFloat64), tol, tol);
  }
}

TEST_CASE("loss kernels: cross_entropy_forward on masked rows and bad logits", "[ops][loss][kernels]") {
  for (DType d : {kFloat64, kFloat32}) {
    INFO(dtype_name(d));
    // row 0: class 0 masked; row 1: every class masked (ignored)
    const Tensor x = tensor({{-kInf, 0.0, 0.0}, {-kInf, -kInf, -kInf}}, d);
    const kernels::ClassLossConfig c{.reduction = Reduction::None};
    Tensor out = Tensor::empty({2}, d), e = Tensor::empty({2, 3}, d), inv_s = Tensor::empty({2}, d);
    kernels::cross_entropy_forward(x, idx({1, -100}), Tensor(), c, out, &e, &inv_s);
    REQUIRE_ALLCLOSE(out, tensor({std::log(2.0), 0.0}, kFloat64), 1e-7, 1e-7);
    // exactly 0 at masked classes (Eigen's clamped exp would leave ~1e-39 there)
    REQUIRE(e.to_vector() == std::vector<double>{0.0, 1.0, 1.0, 0.0, 0.0, 0.0});
    REQUIRE(inv_s.to_vector() == std::vector<double>{0.5, 0.0});

    Tensor o2 = Tensor::empty({2}, d);
    const std::string msg = testing::error_of([&] {
      kernels::cross_entropy_forward(tensor({{0.0, 1.0}, {kInf, 0.0}}, d), idx({0, 1}), Tensor(), c, o2);
    });
    REQUIRE_THAT(msg, Contains("cross_entropy: input (shape [2, 2]) has +inf among the logits of sample [1]"));
  }
}

TEST_CASE("loss kernels: cross_entropy_backward is (p A - a) G per sample", "[ops][loss][kernels]") {
  for (DType d : {kFloat64, kFloat32}) {
    INFO(dtype_name(d));
    const double tol = d == kFloat64 ? 1e-15 : 1e-6;
    const Tensor x = fixture_x(d);
    Tensor out = Tensor::empty({2}, d), e = Tensor::empty({2, 3}, d), inv_s = Tensor::empty({2}, d);
    kernels::ClassLossConfig c{.reduction = Reduction::None};
    kernels::cross_entropy_forward(x, idx({2, 1}), Tensor(), c, out, &e, &inv_s);
    const Tensor e_before = e.clone();
    // numpy: (p - onehot) * g[:, None] with g = [1, -2]
    const Tensor dx = kernels::cross_entropy_backward(tensor({1.0, -2.0}, d), e, inv_s, idx({2, 1}), Tensor(), c);
    REQUIRE_ALLCLOSE(dx,
                     tensor({{0.09003057317038043, 0.24472847105479767, -0.3347590442251781},
                             {-0.6666666666666667, 1.3333333333333333, -0.6666666666666667}},
                            kFloat64),
                     tol, tol);
    REQUIRE(e.to_vector() == e_before.to_vector());  // e is read, not consumed (retained graphs)

    // weighted, smoothed mean (norm 3): numpy (p A - a) / 3
    c = {.eps = 0.3, .norm = 3.0, .reduction = Reduction::Mean};
    kernels::cross_entropy_forward(x, idx({2, 1}), tensor({0.5, 1.0, 2.0}, d), c, out, &e, &inv_s);
    REQUIRE_ALLCLOSE(kernels::cross_entropy_backward(tensor(1.0, d), e, inv_s, idx({2, 1}), tensor({0.5, 1.0, 2.0}, d), c),
                     tensor({{0.03585116768272192, 0.10942494144863196, -0.14527610913135391},
                             {0.10000000000000002, -0.14999999999999997, 0.05000000000000002}},
                            kFloat64),
                     tol, tol);

    // smoothed, unweighted mean (norm 2; float32: the SIMD row pass): numpy (p A - a) / 2
    c = {.eps = 0.3, .norm = 2.0, .reduction = Reduction::Mean};
    kernels::cross_entropy_forward(x, idx({2, 1}), Tensor(), c, out, &e, &inv_s);
    REQUIRE_ALLCLOSE(kernels::cross_entropy_backward(tensor(1.0, d), e, inv_s, idx({2, 1}), Tensor(), c),
                     tensor({{-0.00498471341480979, 0.07236423552739882, -0.06737952211258907},
                             {0.11666666666666667, -0.2333333333333333, 0.11666666666666667}},
                            kFloat64),
                     tol, tol);

    // probability targets, sum, g = 2: numpy 2 (p A - a)
    c = {.eps = 0.3, .reduction = Reduction::Sum, .prob = true};
    const Tensor y = tensor({{0.2, 0.3, 0.5}, {1.0, 0.0, 0.0}}, d);
    kernels::cross_entropy_forward(x, y, Tensor(), c, out, &e, &inv_s);
    REQUIRE_ALLCLOSE(kernels::cross_entropy_backward(tensor(2.0, d), e, inv_s, y, Tensor(), c),
                     tensor({{-0.2999388536592391, -0.13054305789040466, 0.4304819115496439},
                             {-0.9333333333333332, 0.4666666666666667, 0.4666666666666667}},
                            kFloat64),
                     tol, tol);

    // mean with nothing to average: zeros
    c = {.norm = 0.0, .reduction = Reduction::Mean};
    REQUIRE(kernels::cross_entropy_backward(tensor(1.0, d), e, inv_s, idx({-100, -100}), Tensor(), c).to_vector() ==
            std::vector<double>(6, 0.0));
  }
}

TEST_CASE("loss kernels: cross_entropy_backward may write dx over e (same values, no new buffer)", "[ops][loss][kernels]") {
  Generator gen(11);
  // C = 3 and 70: float32 index targets take the short-row (copy, then in place) and long-row
  // (one out-of-place pass) SIMD paths; smoothing, weights, probability targets the Eigen rows.
  for (DType d : {kFloat32, kFloat64})
    for (std::int64_t C : {3, 70})
      for (int variant = 0; variant < 3; ++variant) {
        INFO(dtype_name(d) << " C=" << C << " variant " << variant);
        const Tensor x = randn({5, C}, gen, d) * 3.0;
        kernels::ClassLossConfig c{.eps = variant == 1 ? 0.2 : 0.0, .norm = 5.0, .reduction = Reduction::Mean,
                                   .prob = variant == 2};
        const Tensor y = variant == 2 ? softmax(randn({5, C}, gen, d), 1) : randint(0, C, {5}, gen);
        const Tensor w = variant == 1 ? rand({C}, gen, d) + 0.5 : Tensor();
        Tensor out = Tensor::empty({}, d), e = Tensor::empty({5, C}, d), inv_s = Tensor::empty({5}, d);
        kernels::cross_entropy_forward(x, y, w, c, out, &e, &inv_s);
        const Tensor g = tensor(1.5, d);
        const auto ptr = [](const Tensor& t) -> const void* {
          return t.dtype() == kFloat32 ? static_cast<const void*>(t.data<float>()) : t.data<double>();
        };
        const Tensor fresh = kernels::cross_entropy_backward(g, e, inv_s, y, w, c);
        REQUIRE(ptr(fresh) != ptr(e));
        const Tensor over = kernels::cross_entropy_backward(g, e, inv_s, y, w, c, /*overwrite_e=*/true);
        REQUIRE(ptr(over) == ptr(e));
        REQUIRE(over.to_vector() == fresh.to_vector());  // bit for bit
      }
}

TEST_CASE("loss kernels: nll_loss_forward and nll_loss_backward", "[ops][loss][kernels]") {
  for (DType d : {kFloat64, kFloat32}) {
    INFO(dtype_name(d));
    const Tensor lp = fixture_x(d);  // taken as given log-probabilities
    const Tensor w = tensor({0.5, 1.0, 2.0}, d);
    const kernels::ClassLossConfig c{.norm = 3.0, .reduction = Reduction::Mean};
    Tensor out = Tensor::empty({}, d);
    kernels::nll_loss_forward(lp, idx({2, 1}), w, c, out);
    REQUIRE(out.item() == -2.0);  // -(2 * 3 + 1 * 0) / 3
    const Tensor dlp = kernels::nll_loss_backward(tensor(1.5, d), Shape{2, 3}, d, idx({2, 1}), w, c);
    // -g w_t / norm at the targets: -1.5 * 2 / 3 = -1, -1.5 * 1 / 3 = -0.5
    REQUIRE(dlp.to_vector() == std::vector<double>{0.0, 0.0, -1.0, 0.0, -0.5, 0.0});
    const kernels::ClassLossConfig none{.reduction = Reduction::None};
    Tensor per = Tensor::empty({2}, d);
    kernels::nll_loss_forward(lp, idx({0, -100}), Tensor(), none, per);
    REQUIRE(per.to_vector() == std::vector<double>{-1.0, 0.0});
    REQUIRE(kernels::nll_loss_backward(tensor({3.0, 4.0}, d), Shape{2, 3}, d, idx({0, -100}), Tensor(), none)
                .to_vector() == std::vector<double>{-3.0, 0.0, 0.0, 0.0, 0.0, 0.0});
  }
}

TEST_CASE("loss kernels: class_loss_onehot and kl_div_forward", "[ops][loss][kernels]") {
  // [N, C, d] = [1, 3, 2], targets [[2, -100]]: onehot[0, 2, 0] = 1; valid [1, 1, 2] = [[[1, 0]]]
  const kernels::ClassLossConfig c{};
  const auto [onehot, valid] = kernels::class_loss_onehot(Shape{1, 3, 2}, kFloat64, from_vector(std::vector<std::int64_t>{2, -100}, Shape{1, 2}), c);
  REQUIRE(onehot.to_vector() == std::vector<double>{0, 0, 0, 0, 1, 0});
  REQUIRE(valid.shape() == Shape{1, 1, 2});
  REQUIRE(valid.to_vector() == std::vector<double>{1, 0});

  // numpy: t (log t - x) with 0 where t = 0; log_target: exp(t) (t - x), 0 where t = -inf
  const Tensor x = tensor({-1.0, -0.5, -2.0}, kFloat64);
  const std::vector<double> expected{-0.09657359027997264, 0.0, 1.2842384456611644};
  REQUIRE_ALLCLOSE(kernels::kl_div_forward(x, tensor({0.25, 0.0, 0.75}, kFloat64), false), from_vector(expected, Shape{3}, kFloat64), 1e-15);
  REQUIRE_ALLCLOSE(kernels::kl_div_forward(x, tensor({std::log(0.25), -kInf, std::log(0.75)}, kFloat64), true),
                   from_vector(expected, Shape{3}, kFloat64), 1e-15);
}

TEST_CASE("loss kernels: the fused VJPs agree with the formula VJPs (masks, ignore_index, smoothing, weights, probabilities)",
          "[ops][loss][kernels]") {
  // backward() runs the fused kernel; grad(..., create_graph) the recorded tensor-op formula.
  Generator gen(211);
  for (DType d : {kFloat64, kFloat32})
    for (const Shape& s : {Shape{4, 5}, Shape{2, 5, 3}, Shape{5}})
      for (bool prob : {false, true})
        for (bool use_weight : {false, true})
          for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum})
            for (double eps : {0.0, 0.3}) {
              INFO(dtype_name(d) << " shape " << s.str() << " prob " << prob << " weight " << use_weight << " reduction "
                                 << static_cast<int>(r) << " eps " << eps);
              const int cd = s.rank() == 1 ? 0 : 1;
              const std::int64_t C = s[cd];
              // class 0 masked (-inf) in every sample; with index targets the first sample ignored
              Tensor x0 = randn(s, gen, d);
              {
                const Tensor mask = narrow(zeros(s, d), cd, 0, 1) - kInf;
                x0 = cat({mask, narrow(x0, cd, 1, C - 1)}, cd).detach();
              }
              Tensor x = x0.clone().requires_grad_();
              Tensor t;
              if (prob) {
                // no mass on the masked class (else the loss is +inf)
                const Tensor y = rand(s, gen, d);
                t = cat({narrow(zeros(s, d), cd, 0, 1), narrow(y, cd, 1, C - 1)}, cd).detach().requires_grad_();
              } else {
                Shape ts = s;
                ts.erase(cd);
                t = randint(1, C, ts, gen);
                if (s.rank() > 1) t.mutable_data<std::int64_t>()[0] = -100;
              }
              // weight 0 on the masked class keeps label smoothing finite there
              Tensor w;
              if (use_weight) w = cat({zeros({1}, d), rand(Shape{C - 1}, gen, d) + 0.5}, 0).detach().requires_grad_();
              else if (eps > 0) continue;  // smoothing over a -inf class without a weight is +inf
              const Tensor l = cross_entropy(x, t, {.weight = w, .reduction = r, .label_smoothing = eps});
              const Tensor g = randn(l.shape(), gen, d);
              std::vector<Tensor> wrt{x};
              if (prob) wrt.push_back(t);
              if (use_weight) wrt.push_back(w);
              const auto formula = grad({l}, wrt, {g}, {.create_graph = true});
              const auto fused = grad({l}, wrt, {g}, {.retain_graph = true});
              const double tol = d == kFloat64 ? 1e-13 : 1e-5;
              for (std::size_t k = 0; k < wrt.size(); ++k) {
                INFO("input " << k);
                REQUIRE_ALLCLOSE(fused[k], formula[k].detach(), tol, tol);
              }
              // dx is finite (dweight[0] is +-inf with smoothing: d/dw0 of w0 (eps / C) (-log 0))
              for (double v : fused[0].to_vector()) REQUIRE(std::isfinite(v));
              // the masked class gets gradient 0 in every sample
              REQUIRE(sum(abs(narrow(fused[0], cd, 0, 1))).item() == 0.0);

              // nll_loss on the log-probabilities: the same agreement (index targets only)
              if (!prob) {
                Tensor lp = log_softmax(x0, cd).detach().requires_grad_();
                lp = where(isinf(lp), 0.0, lp).detach().requires_grad_();
                const Tensor ln = nll_loss(lp, t, {.weight = w, .reduction = r});
                std::vector<Tensor> wrt2{lp};
                if (use_weight) wrt2.push_back(w);
                const auto f2 = grad({ln}, wrt2, {g}, {.create_graph = true});
                const auto k2 = grad({ln}, wrt2, {g}, {.retain_graph = true});
                for (std::size_t k = 0; k < wrt2.size(); ++k) REQUIRE_ALLCLOSE(k2[k], f2[k].detach(), tol, tol);
              }
            }
}
