// SPDX-License-Identifier: MIT
// Losses: values against PyTorch 1.13 (torch.nn.functional, float64; the script that printed them
// is summarised next to each table), float64 gradcheck and gradgradcheck over every option
// combination, the fused backward against the recorded tensor-op backward, gradient and Hessian
// identities, extreme and masked logits, and bad input. mse_loss, l1_loss, smooth_l1_loss: values
// against numbers computed in Python (double precision, plain arithmetic on the same inputs, printed
// with repr), gradients at chosen points by hand (including the kinks, with PyTorch's conventions),
// float64 gradcheck and gradgradcheck over reductions and shapes, empty tensors, and bad input.
#include <cmath>
#include <functional>
#include <limits>

#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }
Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, kFloat64); }
Tensor idx(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }
Tensor idx(std::initializer_list<std::int64_t> v) {
  return from_vector(std::vector<std::int64_t>(v), Shape{static_cast<std::int64_t>(v.size())});
}

// The fixture of the value tables: 3 samples, 4 classes.
Tensor fixture_logits(DType dtype = kFloat64) {
  return tensor({{0.5, -1.2, 2.0, 0.3}, {1.5, 0.2, -0.7, -2.1}, {-0.4, 0.9, 0.1, 1.7}}, dtype);
}
Tensor fixture_weight(DType dtype = kFloat64) { return tensor({0.5, 1.5, 2.0, 0.8}, dtype); }
Tensor fixture_probs(DType dtype = kFloat64) {
  return tensor({{0.1, 0.2, 0.3, 0.4}, {0.7, 0.0, 0.2, 0.1}, {0.25, 0.25, 0.25, 0.25}}, dtype);
}

Tensor expected_of(const std::vector<double>& v, Reduction r, const Shape& none_shape) {
  return r == Reduction::None ? f64(v, none_shape) : tensor(v[0], kFloat64);
}

std::string describe(Reduction r) {
  switch (r) {
    case Reduction::None: return "none";
    case Reduction::Mean: return "mean";
    case Reduction::Sum: return "sum";
    case Reduction::BatchMean: return "batchmean";
  }
  return "?";
}

// Random class-index targets for logits of shape s (class dim 1, or 0 for rank 1), with the first
// one set to ignore_index when asked.
Tensor random_targets(const Shape& s, Generator& gen, bool with_ignored, std::int64_t ignore_index) {
  Shape ts = s;
  ts.erase(s.rank() == 1 ? 0 : 1);
  const std::int64_t C = s[s.rank() == 1 ? 0 : 1];
  Tensor t = randint(0, C, ts, gen);
  if (with_ignored) t.mutable_data<std::int64_t>()[0] = ignore_index;
  return t;
}

// Positive leaf in [0.5, 2): class weights, pos_weight.
Tensor positive(const Shape& s, Generator& gen) {
  return (rand(s, gen, kFloat64) * 1.5 + 0.5).detach().requires_grad_();
}

const std::vector<Shape> kClassShapes = {Shape{3, 4}, Shape{2, 3, 2}, Shape{1, 3, 2, 2}, Shape{4}, Shape{1, 3}, Shape{3, 1}};
const std::vector<Reduction> kReductions = {Reduction::None, Reduction::Mean, Reduction::Sum};


using tapegrad::testing::error_of;

// The regression losses' value tables: d = input - target = [0.2, 0, 1.5, 2, -0.8, -0.6] (one
// exact 0, one |d| = 2, the rest inside and outside smooth_l1's quadratic zone for beta 1 and 0.5).
Tensor table_input() { return tensor({{0.5, -1.2, 2.0}, {1.5, 0.2, -0.7}}, kFloat64); }
Tensor table_target() { return tensor({{0.3, -1.2, 0.5}, {-0.5, 1.0, -0.1}}, kFloat64); }

using Loss = std::function<Tensor(const Tensor&, const Tensor&, Reduction)>;

struct NamedLoss {
  const char* name;
  Loss f;
  double kink;  // |d| where the loss is not twice differentiable (besides 0), or -1
};

std::vector<NamedLoss> all_losses() {
  return {
      {"mse_loss", [](const Tensor& x, const Tensor& t, Reduction r) { return mse_loss(x, t, r); }, -1},
      {"l1_loss", [](const Tensor& x, const Tensor& t, Reduction r) { return l1_loss(x, t, r); }, -1},
      {"smooth_l1_loss", [](const Tensor& x, const Tensor& t, Reduction r) { return smooth_l1_loss(x, t, r); }, 1.0},
      {"smooth_l1_loss(beta=0.5)",
       [](const Tensor& x, const Tensor& t, Reduction r) { return smooth_l1_loss(x, t, r, 0.5); }, 0.5},
      {"smooth_l1_loss(beta=0)",
       [](const Tensor& x, const Tensor& t, Reduction r) { return smooth_l1_loss(x, t, r, 0.0); }, -1},
  };
}

// Random float64 leaves (input, target) of shape s whose differences stay at least 0.1 away from
// 0 and from `kink`, so central differences never straddle a kink.
std::pair<Tensor, Tensor> away_from_kinks(const Shape& s, Generator& gen, double kink) {
  Tensor x = randn(s, gen, kFloat64);
  Tensor t = randn(s, gen, kFloat64);
  const double* px = x.data<double>();
  double* pt = t.mutable_data<double>();
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    for (int k = 0; k < 4; ++k) {
      const double d = px[i] - pt[i];
      const bool near = std::abs(d) < 0.1 || (kink > 0 && std::abs(std::abs(d) - kink) < 0.1);
      if (!near) break;
      pt[i] -= 0.25;  // moves d by 0.25: off a kink, and never onto the next one within 4 steps
    }
  }
  return {x.requires_grad_(), t.requires_grad_()};
}

// Shapes of the regression losses' gradchecks: rank 0, 1, 7, rank 4, size-1 dims.
const std::vector<Shape> kShapes = {Shape{}, Shape{1}, Shape{7}, Shape{2, 3}, Shape{3, 1}, Shape{1, 2, 1, 3}};

}  // namespace

// ---------------------------------------------------------------- cross_entropy: values

TEST_CASE("cross_entropy: index-target values match PyTorch for every option", "[ops][loss]") {
  // Python: F.cross_entropy(x, t, weight=w, reduction=r, label_smoothing=eps) with x, w of
  // fixture_logits/fixture_weight, t = [2, 0, 3] or [2, -100, 3]; also re-derived with numpy from
  // (1 - eps) nll + (eps / C) smooth, which agreed to 1e-13.
  struct Case {
    bool weight, ignore;
    double eps;
    Reduction r;
    std::vector<double> expected;
  };
  const std::vector<Case> cases = {
      {false, false, 0.0, Reduction::None, {0.36919930736901835, 0.3440567398819779, 0.5730575613641006}},
      {false, false, 0.0, Reduction::Mean, {0.42877120287169895}},
      {false, false, 0.0, Reduction::Sum, {1.2863136086150968}},
      {false, false, 0.1, Reduction::None, {0.5291993073690184, 0.5215567398819779, 0.6855575613641005}},
      {false, false, 0.1, Reduction::Mean, {0.5787712028716989}},
      {false, false, 0.1, Reduction::Sum, {1.7363136086150968}},
      {false, false, 1.0, Reduction::None, {1.9691993073690184, 2.119056739881978, 1.6980575613641005}},
      {false, false, 1.0, Reduction::Mean, {1.928771202871699}},
      {false, false, 1.0, Reduction::Sum, {5.786313608615097}},
      {false, true, 0.0, Reduction::None, {0.36919930736901835, 0.0, 0.5730575613641006}},
      {false, true, 0.0, Reduction::Mean, {0.4711284343665595}},
      {false, true, 0.0, Reduction::Sum, {0.942256868733119}},
      {false, true, 0.1, Reduction::None, {0.5291993073690184, 0.0, 0.6855575613641005}},
      {false, true, 0.1, Reduction::Mean, {0.6073784343665595}},
      {false, true, 0.1, Reduction::Sum, {1.214756868733119}},
      {false, true, 1.0, Reduction::None, {1.9691993073690184, 0.0, 1.6980575613641005}},
      {false, true, 1.0, Reduction::Mean, {1.8336284343665594}},
      {false, true, 1.0, Reduction::Sum, {3.667256868733119}},
      {true, false, 0.0, Reduction::None, {0.7383986147380367, 0.17202836994098894, 0.4584460490912805}},
      {true, false, 0.0, Reduction::Mean, {0.4148100102334261}},
      {true, false, 0.0, Reduction::Sum, {1.3688730337703061}},
      {true, false, 0.1, Reduction::None, {0.8816126701485153, 0.4268623417327274, 0.6176183515458444}},
      {true, false, 0.1, Reduction::Mean, {0.5836646555839659}},
      {true, false, 0.1, Reduction::Sum, {1.9260933634270874}},
      {true, false, 1.0, Reduction::None, {2.170539168842822, 2.7203680878583736, 2.0501690736369205}},
      {true, false, 1.0, Reduction::Mean, {2.103356463738823}},
      {true, false, 1.0, Reduction::Sum, {6.941076330338117}},
      {true, true, 0.0, Reduction::None, {0.7383986147380367, 0.0, 0.4584460490912805}},
      {true, true, 0.0, Reduction::Mean, {0.4274445227961848}},
      {true, true, 0.0, Reduction::Sum, {1.1968446638293173}},
      {true, true, 0.1, Reduction::None, {0.8816126701485153, 0.0, 0.6176183515458444}},
      {true, true, 0.1, Reduction::Mean, {0.5354396506051285}},
      {true, true, 0.1, Reduction::Sum, {1.4992310216943598}},
      {true, true, 1.0, Reduction::None, {2.170539168842822, 0.0, 2.0501690736369205}},
      {true, true, 1.0, Reduction::Mean, {1.5073958008856225}},
      {true, true, 1.0, Reduction::Sum, {4.220708242479743}},
  };
  for (const Case& k : cases) {
    for (DType dtype : {kFloat64, kFloat32}) {
      for (bool requires_grad : {false, true}) {  // the recording path keeps exp(x - max) for backward
        INFO("weight " << k.weight << " ignore " << k.ignore << " eps " << k.eps << " " << describe(k.r) << " "
                       << dtype_name(dtype) << " requires_grad " << requires_grad);
        Tensor x = fixture_logits(dtype);
        if (requires_grad) x.requires_grad_();
        CrossEntropyOptions o;
        if (k.weight) o.weight = fixture_weight(dtype);
        o.label_smoothing = k.eps;
        o.reduction = k.r;
        const Tensor l = cross_entropy(x, k.ignore ? idx({2, -100, 3}) : idx({2, 0, 3}), o);
        REQUIRE(l.dtype() == dtype);
        const double tol = dtype == kFloat64 ? 1e-14 : 2e-6;
        REQUIRE_ALLCLOSE(l.to(kFloat64), expected_of(k.expected, k.r, Shape{3}), tol, tol);
      }
    }
  }
}

TEST_CASE("cross_entropy: probability-target values match PyTorch for every option", "[ops][loss]") {
  // Python: F.cross_entropy(x, y, weight=w, reduction=r, label_smoothing=eps), y = fixture_probs
  // (not renormalised; mean divides by the number of samples, not by weights).
  struct Case {
    bool weight;
    double eps;
    Reduction r;
    std::vector<double> expected;
  };
  const std::vector<Case> cases = {
      {false, 0.0, Reduction::None, {1.8391993073690185, 1.144056739881978, 1.6980575613641005}},
      {false, 0.0, Reduction::Mean, {1.5604378695383658}},
      {false, 0.0, Reduction::Sum, {4.681313608615097}},
      {false, 0.1, Reduction::None, {1.8521993073690188, 1.2415567398819782, 1.6980575613641005}},
      {false, 0.1, Reduction::Mean, {1.597271202871699}},
      {false, 0.1, Reduction::Sum, {4.791813608615097}},
      {false, 1.0, Reduction::None, {1.9691993073690184, 2.119056739881978, 1.6980575613641005}},
      {false, 1.0, Reduction::Mean, {1.928771202871699}},
      {false, 1.0, Reduction::Sum, {5.786313608615097}},
      {true, 0.0, Reduction::None, {2.0478831203586534, 1.453567094102042, 2.0501690736369205}},
      {true, 0.0, Reduction::Mean, {1.8505397626992055}},
      {true, 0.0, Reduction::Sum, {5.5516192880976165}},
      {true, 0.1, Reduction::None, {2.0601487252070703, 1.5802471934776754, 2.0501690736369205}},
      {true, 0.1, Reduction::Mean, {1.8968549974405555}},
      {true, 0.1, Reduction::Sum, {5.690564992321667}},
      {true, 1.0, Reduction::None, {2.170539168842822, 2.7203680878583736, 2.0501690736369205}},
      {true, 1.0, Reduction::Mean, {2.3136921101127053}},
      {true, 1.0, Reduction::Sum, {6.941076330338116}},
  };
  for (const Case& k : cases) {
    for (DType dtype : {kFloat64, kFloat32}) {
      for (bool requires_grad : {false, true}) {
        INFO("weight " << k.weight << " eps " << k.eps << " " << describe(k.r) << " " << dtype_name(dtype));
        Tensor x = fixture_logits(dtype);
        if (requires_grad) x.requires_grad_();
        CrossEntropyOptions o;
        if (k.weight) o.weight = fixture_weight(dtype);
        o.label_smoothing = k.eps;
        o.reduction = k.r;
        o.ignore_index = 0;  // does not apply to probability targets
        const double tol = dtype == kFloat64 ? 1e-14 : 2e-6;
        REQUIRE_ALLCLOSE(cross_entropy(x, fixture_probs(dtype), o).to(kFloat64), expected_of(k.expected, k.r, Shape{3}),
                         tol, tol);
      }
    }
  }
}

TEST_CASE("cross_entropy: [N, C, d] and unbatched [C] inputs match PyTorch", "[ops][loss]") {
  // Python: x3 [2, 3, 2] below, t3 = [[2, 0], [-100, 1]], w3 = [1, 2, 0.5], label_smoothing = 0.2
  const Tensor x3 = tensor({{{0.1, -0.5}, {1.2, 0.3}, {-0.8, 2.2}}, {{0.0, 0.7}, {-1.1, 0.4}, {0.6, -0.2}}}, kFloat64);
  const Tensor t3 = idx({2, 0, -100, 1}, Shape{2, 2});
  const Tensor w3 = f64({1.0, 2.0, 0.5});
  CrossEntropyOptions o{.weight = w3, .label_smoothing = 0.2};
  o.reduction = Reduction::None;
  REQUIRE_ALLCLOSE(cross_entropy(x3, t3, o),
                   f64({1.1832262815874248, 2.796076642754816, 0.0, 1.9511289676339805}, Shape{2, 2}), 1e-14);
  o.reduction = Reduction::Mean;
  REQUIRE_ALLCLOSE(cross_entropy(x3, t3, o), tensor(1.694409111993206, kFloat64), 1e-14);
  o.reduction = Reduction::Sum;
  REQUIRE_ALLCLOSE(cross_entropy(x3, t3, o), tensor(5.930431891976221, kFloat64), 1e-14);
  // probability targets: y3 = softmax of another [2, 3, 2] tensor along dim 1 (values from PyTorch)
  const Tensor y3 = f64({0.31987305633591967, 0.26095545894234945, 0.2894331103942646, 0.15827748666791622,
                         0.39069383326981566, 0.5807670543897344, 0.2291679716564659, 0.48890265771885366,
                         0.30934440495480836, 0.24278187480774444, 0.4614876233887257, 0.26831546747340185},
                        Shape{2, 3, 2});
  o.reduction = Reduction::None;
  REQUIRE_ALLCLOSE(cross_entropy(x3, y3, o),
                   f64({1.159792638853221, 1.6601682909464315, 1.8198893294396132, 1.1392690924161306}, Shape{2, 2}),
                   1e-14);
  o.reduction = Reduction::Mean;
  REQUIRE_ALLCLOSE(cross_entropy(x3, y3, o), tensor(1.444779837913849, kFloat64), 1e-14);

  // unbatched: x1 = [0.2, -0.3, 1.1], target 1 (rank 0)
  const Tensor x1 = f64({0.2, -0.3, 1.1});
  const Tensor l1 = cross_entropy(x1, from_vector(std::vector<std::int64_t>{1}, Shape{}), {.reduction = Reduction::None});
  REQUIRE(l1.dim() == 0);
  REQUIRE_ALLCLOSE(l1, tensor(1.9026926145345144, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(cross_entropy(x1, from_vector(std::vector<std::int64_t>{1}, Shape{}), {.weight = w3, .label_smoothing = 0.3}),
                   tensor(1.6048560377177, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(cross_entropy(x1, f64({0.2, 0.5, 0.3}), {.weight = w3, .reduction = Reduction::Sum, .label_smoothing = 0.3}),
                   tensor(2.126986935822196, kFloat64), 1e-14);
}

TEST_CASE("cross_entropy: ignore_index may name a real class", "[ops][loss]") {
  // Targets equal to ignore_index are skipped even when it is a valid class; a target out of
  // range is accepted only when it equals ignore_index.
  const Tensor x = fixture_logits();
  const Tensor a = cross_entropy(x, idx({2, 0, 3}), {.ignore_index = 0, .reduction = Reduction::None});
  REQUIRE_ALLCLOSE(a, f64({0.36919930736901835, 0.0, 0.5730575613641006}), 1e-14);
  const Tensor b = cross_entropy(x, idx({2, -1, 3}), {.ignore_index = -1, .reduction = Reduction::None});
  REQUIRE_ALLCLOSE(b, f64({0.36919930736901835, 0.0, 0.5730575613641006}), 1e-14);
  REQUIRE_ALLCLOSE(cross_entropy(x, idx({2, 7, 3}), {.ignore_index = 7}), tensor(0.4711284343665595, kFloat64), 1e-14);
}

// ---------------------------------------------------------------- cross_entropy: gradients

TEST_CASE("cross_entropy: gradcheck and gradgradcheck, index targets, every option combination",
          "[ops][loss][gradcheck]") {
  Generator gen(101);
  for (const Shape& s : kClassShapes) {
    const std::int64_t C = s[s.rank() == 1 ? 0 : 1];
    for (bool use_weight : {false, true})
      for (bool with_ignored : {false, true})
        for (Reduction r : kReductions)
          for (double eps : {0.0, 0.1, 1.0}) {
            INFO("shape " << s.str() << " weight " << use_weight << " ignored " << with_ignored << " " << describe(r)
                          << " label_smoothing " << eps);
            Tensor x = randn(s, gen, kFloat64).requires_grad_();
            const Tensor t = random_targets(s, gen, with_ignored, -100);
            std::vector<Tensor> inputs{x, t};
            if (use_weight) inputs.push_back(positive(Shape{C}, gen));  // weights are differentiated too
            auto f = [r, eps, use_weight](const std::vector<Tensor>& in) {
              CrossEntropyOptions o;
              if (use_weight) o.weight = in[2];
              o.reduction = r;
              o.label_smoothing = eps;
              return cross_entropy(in[0], in[1], o);
            };
            testing::require_gradcheck(f, inputs, /*second_order=*/true);
          }
  }
}

TEST_CASE("cross_entropy: gradcheck and gradgradcheck, probability targets, every option combination",
          "[ops][loss][gradcheck]") {
  Generator gen(102);
  for (const Shape& s : kClassShapes) {
    const std::int64_t C = s[s.rank() == 1 ? 0 : 1];
    for (bool use_weight : {false, true})
      for (std::int64_t ignore_index : {-100, 0})  // has no effect on probability targets
        for (Reduction r : kReductions)
          for (double eps : {0.0, 0.1, 1.0}) {
            INFO("shape " << s.str() << " weight " << use_weight << " ignore_index " << ignore_index << " "
                          << describe(r) << " label_smoothing " << eps);
            Tensor x = randn(s, gen, kFloat64).requires_grad_();
            Tensor y = rand(s, gen, kFloat64).requires_grad_();  // targets are differentiated too
            std::vector<Tensor> inputs{x, y};
            if (use_weight) inputs.push_back(positive(Shape{C}, gen));
            auto f = [r, eps, use_weight, ignore_index](const std::vector<Tensor>& in) {
              CrossEntropyOptions o;
              if (use_weight) o.weight = in[2];
              o.reduction = r;
              o.label_smoothing = eps;
              o.ignore_index = ignore_index;
              return cross_entropy(in[0], in[1], o);
            };
            testing::require_gradcheck(f, inputs, /*second_order=*/true);
          }
  }
}

TEST_CASE("cross_entropy: the fused backward equals the recorded tensor-op backward", "[ops][loss]") {
  // backward() runs the fused kernel; grad(..., create_graph) runs the tensor-op VJP. Both must
  // give the same gradients for logits, weights and probability targets, on both layouts
  // (class dim last: contiguous rows; [N, C, d]: strided rows), in float64 and float32.
  Generator gen(103);
  for (DType dtype : {kFloat64, kFloat32})
    for (const Shape& s : {Shape{5, 7}, Shape{2, 4, 3}, Shape{6}})
      for (bool prob : {false, true})
        for (bool use_weight : {false, true})
          for (Reduction r : kReductions)
            for (double eps : {0.0, 0.25, 1.0}) {
              INFO(dtype_name(dtype) << " shape " << s.str() << " prob " << prob << " weight " << use_weight << " "
                                     << describe(r) << " eps " << eps);
              const std::int64_t C = s[s.rank() == 1 ? 0 : 1];
              Tensor x = randn(s, gen, dtype).requires_grad_();
              Tensor t = prob ? rand(s, gen, dtype).requires_grad_() : random_targets(s, gen, s.rank() > 1, -100);
              Tensor w = use_weight ? (rand(Shape{C}, gen, dtype) + 0.5).detach().requires_grad_() : Tensor();
              const Tensor l = cross_entropy(x, t, {.weight = w, .reduction = r, .label_smoothing = eps});
              const Tensor g = randn(l.shape(), gen, dtype);
              std::vector<Tensor> wrt{x};
              if (prob) wrt.push_back(t);
              if (use_weight) wrt.push_back(w);
              const auto recorded = grad({l}, wrt, {g}, {.create_graph = true});
              const auto fused = grad({l}, wrt, {g}, {.retain_graph = true});
              REQUIRE(recorded[0].requires_grad());  // recorded, so it differentiates again
              const double tol = dtype == kFloat64 ? 1e-13 : 1e-5;
              for (std::size_t k = 0; k < wrt.size(); ++k) {
                INFO("input " << k);
                REQUIRE_ALLCLOSE(fused[k], recorded[k].detach(), tol, tol);
              }
              // and backward() accumulates the same into .grad
              backward(l, g);
              REQUIRE_ALLCLOSE(x.grad(), recorded[0].detach(), tol, tol);
            }
}

TEST_CASE("cross_entropy: a retained graph can be walked again; the tape is empty afterwards", "[ops][loss]") {
  // The fused backward turns the saved exp(x - max) buffer into the gradient; walking the graph a
  // second time recomputes it. Both layouts, index and probability targets.
  clear_tape();  // graphs an earlier test left (a create_graph cycle keeps its nodes) are not this test's
  Generator gen(107);
  for (const Shape& s : {Shape{4, 5}, Shape{2, 3, 4}})
    for (bool prob : {false, true}) {
      Tensor x = randn(s, gen, kFloat64).requires_grad_();
      const Tensor t = prob ? rand(s, gen, kFloat64) : random_targets(s, gen, false, -100);
      const Tensor l = cross_entropy(x, t, {.weight = rand(Shape{s[1]}, gen, kFloat64) + 0.5, .label_smoothing = 0.1});
      backward(l, {.retain_graph = true});
      const Tensor first = x.grad().clone();
      backward(l);
      REQUIRE_ALLCLOSE(x.grad(), first * 2.0, 1e-14, 1e-16);
      REQUIRE(tape_size() == 0);
    }
}

TEST_CASE("cross_entropy: the gradient of mean CE is (P - Y) / N", "[ops][loss]") {
  // P by hand (std::exp), not by tapegrad.
  const std::vector<double> xv = {0.3, -1.0, 2.2, 0.0, 1.0, 1.0, -0.5, 0.4, -2.0, 0.7, 0.1, 0.9};
  const std::vector<std::int64_t> tv = {2, 1, 0};
  const int N = 3, C = 4;
  std::vector<double> P(12);
  for (int n = 0; n < N; ++n) {
    double z = 0;
    for (int c = 0; c < C; ++c) z += std::exp(xv[n * C + c]);
    for (int c = 0; c < C; ++c) P[n * C + c] = std::exp(xv[n * C + c]) / z;
  }
  for (double eps : {0.0, 0.1}) {
    Tensor x = f64(xv, Shape{N, C}).requires_grad_();
    backward(cross_entropy(x, idx(tv, Shape{N}), {.label_smoothing = eps}));
    std::vector<double> expected(12);
    for (int n = 0; n < N; ++n)
      for (int c = 0; c < C; ++c) {
        const double y = (1 - eps) * (c == tv[n] ? 1.0 : 0.0) + eps / C;  // smoothed one-hot
        expected[n * C + c] = (P[n * C + c] - y) / N;
      }
    REQUIRE_ALLCLOSE(x.grad(), f64(expected, Shape{N, C}), 1e-14, 1e-16);
  }
}

TEST_CASE("cross_entropy: the Hessian of mean CE is blockdiag(diag(p) - p p^T) / N", "[ops][loss]") {
  const std::vector<double> xv = {0.3, -1.0, 2.2, 0.0, 1.0, 1.0, -0.5, 0.4, -2.0, 0.7, 0.1, 0.9};
  const int N = 3, C = 4;
  std::vector<double> P(12);
  for (int n = 0; n < N; ++n) {
    double z = 0;
    for (int c = 0; c < C; ++c) z += std::exp(xv[n * C + c]);
    for (int c = 0; c < C; ++c) P[n * C + c] = std::exp(xv[n * C + c]) / z;
  }
  std::vector<double> H(144, 0.0);
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < C; ++i)
      for (int j = 0; j < C; ++j)
        H[(n * C + i) * 12 + n * C + j] = ((i == j ? P[n * C + i] : 0.0) - P[n * C + i] * P[n * C + j]) / N;
  const Tensor t = idx({2, 1, 0});
  for (bool prob : {false, true}) {  // with probability targets (summing to 1) the Hessian is the same
    const Tensor y = f64({0.2, 0.1, 0.6, 0.1, 0.0, 1.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25}, Shape{N, C});
    const Tensor h = hessian([&](const Tensor& x) { return cross_entropy(x, prob ? y : t); }, f64(xv, Shape{N, C}));
    REQUIRE_ALLCLOSE(h, f64(H, Shape{12, 12}), 1e-12, 1e-15);
  }
  // hvp agrees with H v
  const Tensor v = f64({1, 0, -1, 2, 0.5, 0.5, 0, 1, -1, 3, 0, 0}, Shape{N, C});
  const Tensor hv = hvp([&](const Tensor& x) { return cross_entropy(x, t); }, f64(xv, Shape{N, C}), v);
  std::vector<double> expected(12, 0.0);
  const auto vv = v.to_vector();
  for (int a = 0; a < 12; ++a)
    for (int b = 0; b < 12; ++b) expected[a] += H[a * 12 + b] * vv[b];
  REQUIRE_ALLCLOSE(hv, f64(expected, Shape{N, C}), 1e-12, 1e-15);
}

// ---------------------------------------------------------------- cross_entropy: numerics

TEST_CASE("cross_entropy: extreme logits give finite losses and the exact limiting gradients", "[ops][loss]") {
  SECTION("float64, +-1e4 and +-1e30") {
    // row 0: the target has the smallest logit: loss 2e4, p = [1, 0, 0]
    // row 1: the target has the largest logit by 2e30: loss 0, p = y
    // row 2: two tied logits of 1e30: loss log 2, p = [1/2, 1/2, 0]
    Tensor x = tensor({{1e4, -1e4, 0.0}, {-1e30, 1e30, 0.0}, {1e30, 1e30, -1e30}}, kFloat64).requires_grad_();
    const Tensor l = cross_entropy(x, idx({1, 1, 0}), {.reduction = Reduction::Sum});
    REQUIRE_ALLCLOSE(l, tensor(2e4 + std::log(2.0), kFloat64), 1e-15, 0);
    backward(l);
    REQUIRE_ALLCLOSE(x.grad(), tensor({{1.0, -1.0, 0.0}, {0.0, 0.0, 0.0}, {-0.5, 0.5, 0.0}}, kFloat64), 1e-15, 0);
    const Tensor none = cross_entropy(x.detach(), idx({1, 1, 0}), {.reduction = Reduction::None});
    REQUIRE_ALLCLOSE(none, f64({2e4, 0.0, std::log(2.0)}), 1e-15, 0);
    // probability targets and label smoothing: the -1e30 logits are heavily penalised but finite
    const Tensor y = tensor({{0.5, 0.5, 0.0}, {0.0, 1.0, 0.0}, {0.5, 0.5, 0.0}}, kFloat64);
    REQUIRE_ALLCLOSE(cross_entropy(x.detach(), y, {.reduction = Reduction::None}), f64({1e4, 0.0, std::log(2.0)}), 1e-15, 0);
    const Tensor ls = cross_entropy(x.detach(), idx({1, 1, 0}), {.reduction = Reduction::None, .label_smoothing = 0.3});
    REQUIRE(std::isfinite(ls.at({1})));
    REQUIRE_ALLCLOSE(ls, f64({0.7 * 2e4 + 0.1 * (1e4 + 2e4 + 0.0), 0.1 * (2e30 + 1e30), 0.7 * std::log(2.0) + 0.1 * (2e30 + 3 * std::log(2.0))}),
                     1e-15, 0);
  }
  SECTION("float32, +-80 and +-1e4") {
    // exp(160) overflows float32 without max-subtraction; the limits are exact here.
    Tensor x = tensor({{80, -80}, {-80, 80}, {1e4, -1e4}, {0, 1e4}}, kFloat32).requires_grad_();
    const Tensor l = cross_entropy(x, idx({1, 1, 0, 0}), {.reduction = Reduction::None});
    REQUIRE_ALLCLOSE(l.to(kFloat64), f64({160.0, 0.0, 0.0, 1e4}), 0, 0);
    backward(l, ones({4}, kFloat32));
    REQUIRE_ALLCLOSE(x.grad().to(kFloat64), tensor({{1, -1}, {0, 0}, {0, 0}, {-1, 1}}, kFloat64), 0, 0);
    // the recorded path agrees
    Tensor x2 = x.detach().requires_grad_();
    const auto g = grad({cross_entropy(x2, idx({1, 1, 0, 0}), {.reduction = Reduction::Sum})}, {x2}, {}, {.create_graph = true});
    REQUIRE_ALLCLOSE(g[0].detach().to(kFloat64), tensor({{1, -1}, {0, 0}, {0, 0}, {-1, 1}}, kFloat64), 0, 0);
  }
}

TEST_CASE("cross_entropy: -inf logits (masked classes)", "[ops][loss]") {
  SECTION("at non-target classes: probability 0, gradient 0, no NaN anywhere") {
    Tensor x = tensor({{-kInf, 1.0, 2.0}, {0.5, -kInf, 0.1}}, kFloat64).requires_grad_();
    const Tensor l = cross_entropy(x, idx({2, 0}), {.reduction = Reduction::Sum});
    // Python: math.log(1 + math.exp(-1)), math.log(1 + math.exp(-0.4))
    REQUIRE_ALLCLOSE(l, tensor(0.31326168751822286 + 0.5130152523999526, kFloat64), 1e-14);
    backward(l);
    REQUIRE(x.grad().at({0, 0}) == 0.0);
    REQUIRE(x.grad().at({1, 1}) == 0.0);
    REQUIRE_ALLCLOSE(x.grad(), tensor({{0.0, 0.2689414213699951, -0.2689414213699951}, {-0.401312339887548, 0.0, 0.401312339887548}}, kFloat64), 1e-14);
    // probability targets with 0 on the masked classes: 0 * log 0 = 0 (PyTorch: NaN)
    const Tensor y = tensor({{0.0, 0.5, 0.5}, {0.5, 0.0, 0.5}}, kFloat64);
    const Tensor lp = cross_entropy(x.detach(), y, {.reduction = Reduction::None});
    REQUIRE(std::isfinite(lp.at({0})));
    REQUIRE(std::isfinite(lp.at({1})));
  }
  SECTION("at the target class: +inf loss for that sample only, gradient p - y (finite, as PyTorch)") {
    // Design: the loss of a sample whose target has probability 0 is +inf (as PyTorch); its gradient
    // is the formula p - y, which is also the limit as the target logit goes to -inf and what
    // PyTorch returns. Other samples keep finite losses and gradients.
    Tensor x = tensor({{-kInf, 1.0, 2.0}, {0.5, -kInf, 0.1}}, kFloat64).requires_grad_();
    const Tensor l = cross_entropy(x, idx({0, 2}), {.reduction = Reduction::None});
    REQUIRE(l.at({0}) == kInf);
    REQUIRE_ALLCLOSE(l.detach(), f64({kInf, 0.9130152523999526}), 1e-14);
    backward(l, ones({2}, kFloat64));
    // Python (PyTorch 1.13): x.grad = [[-1, 0.2689, 0.7311], [0.5987, 0, -0.5987]]
    REQUIRE_ALLCLOSE(x.grad(), tensor({{-1.0, 0.2689414213699951, 0.7310585786300049}, {0.598687660112452, 0.0, -0.598687660112452}}, kFloat64), 1e-14);
    REQUIRE(cross_entropy(x.detach(), idx({0, 2})).item() == kInf);  // the mean is +inf, not NaN
  }
  SECTION("an ignored sample whose logits are all -inf (padding) contributes 0 and gets gradient 0") {
    Tensor x = tensor({{-kInf, -kInf}, {1.0, 2.0}}, kFloat64).requires_grad_();
    for (double eps : {0.0, 0.2}) {
      x.zero_grad();
      const Tensor l = cross_entropy(x, idx({-100, 1}), {.reduction = Reduction::None, .label_smoothing = eps});
      REQUIRE(l.at({0}) == 0.0);
      REQUIRE(std::isfinite(l.at({1})));
      backward(l, ones({2}, kFloat64));
      REQUIRE(x.grad().at({0, 0}) == 0.0);  // PyTorch: NaN
      REQUIRE(x.grad().at({0, 1}) == 0.0);
      REQUIRE(std::isfinite(x.grad().at({1, 0})));
    }
  }
  SECTION("label smoothing puts mass on every class: a -inf logit then gives +inf") {
    const Tensor x = tensor({{-kInf, 1.0, 2.0}}, kFloat64);
    REQUIRE(cross_entropy(x, idx({2}), {.label_smoothing = 0.1}).item() == kInf);
    // but a class weight of 0 removes that class from the smoothing term
    REQUIRE(std::isfinite(cross_entropy(x, idx({2}), {.weight = f64({0.0, 1.0, 1.0}), .label_smoothing = 0.1}).item()));
  }
}

TEST_CASE("cross_entropy: NaN and +inf logits are errors that name cross_entropy and the sample", "[ops][loss][bad]") {
  REQUIRE_THROWS_AS(cross_entropy(tensor({{0.0, 1.0}, {NAN, 0.0}}, kFloat64), idx({0, 1})), InvalidArgument);
  REQUIRE_THROWS_WITH(cross_entropy(tensor({{0.0, 1.0}, {NAN, 0.0}}, kFloat64), idx({0, 1})),
                      Contains("cross_entropy: input (shape [2, 2]) has NaN among the logits of sample [1]"));
  REQUIRE_THROWS_WITH(cross_entropy(tensor({{0.0, kInf}, {1.0, 0.0}}), idx({0, 1})),
                      Contains("cross_entropy") && Contains("+inf") && Contains("sample [0]") && Contains("-inf for masked"));
  // a NaN that is not the row's max, on a strided layout [N, C, d], in a fully masked row, with
  // probability targets and without recording
  Tensor x3 = zeros({2, 3, 2}, kFloat64);
  x3.set({1, 2, 0}, NAN);
  REQUIRE_THROWS_WITH(cross_entropy(x3, idx({0, 0, 0, 0}, Shape{2, 2})), Contains("has NaN among the logits of sample [1, 0]"));
  REQUIRE_THROWS_WITH(cross_entropy(x3.requires_grad_(), zeros({2, 3, 2}, kFloat64)), Contains("sample [1, 0]"));
  REQUIRE_THROWS_WITH(cross_entropy(tensor({{-kInf, NAN, -kInf}}, kFloat64), idx({-100})), Contains("NaN"));
  {
    NoGradGuard no_grad;
    REQUIRE_THROWS_WITH(cross_entropy(tensor({{5.0, NAN, 1.0}}, kFloat32), idx({0})), Contains("cross_entropy") && Contains("NaN"));
  }
}

TEST_CASE("cross_entropy: every target ignored gives 0 with zero gradient (mean)", "[ops][loss]") {
  // Documented policy: PyTorch returns NaN (0 / 0) here.
  for (bool use_weight : {false, true})
    for (double eps : {0.0, 0.1}) {
      Tensor x = fixture_logits().requires_grad_();
      Tensor w = fixture_weight().requires_grad_();
      const Tensor l = cross_entropy(x, idx({-100, -100, -100}), {.weight = use_weight ? w : Tensor(), .label_smoothing = eps});
      REQUIRE(l.item() == 0.0);
      backward(l);
      REQUIRE_ALLCLOSE(x.grad(), zeros({3, 4}, kFloat64), 0, 0);
      if (use_weight) REQUIRE_ALLCLOSE(w.grad(), zeros({4}, kFloat64), 0, 0);
      // the recorded path too
      Tensor x2 = fixture_logits().requires_grad_();
      const auto g = grad({cross_entropy(x2, idx({-100, -100, -100}), {.label_smoothing = eps})}, {x2}, {}, {.create_graph = true});
      REQUIRE_ALLCLOSE(g[0].detach(), zeros({3, 4}, kFloat64), 0, 0);
    }
  // an empty batch is the same case; 'sum' of nothing is 0 anyway
  Tensor e = zeros({0, 3}, kFloat64).requires_grad_();
  REQUIRE(cross_entropy(e, from_vector(std::vector<std::int64_t>{}, Shape{0})).item() == 0.0);
  REQUIRE(cross_entropy(e, zeros({0, 3}, kFloat64)).item() == 0.0);
  REQUIRE(cross_entropy(e, from_vector(std::vector<std::int64_t>{}, Shape{0}), {.reduction = Reduction::None}).shape() == Shape{0});
}

TEST_CASE("cross_entropy: bad input throws, naming the op, the argument, the value and what was expected",
          "[ops][loss][bad]") {
  const Tensor x = zeros({4, 10}, kFloat64);
  SECTION("target index out of range, as a multi-index") {
    REQUIRE_THROWS_AS(cross_entropy(x, idx({0, 1, 2, 12})), InvalidArgument);
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 12})), StartsWith("cross_entropy: target[3] = 12 is out of range for 10 classes (expected 0 <= target < 10, or "
                        "ignore_index = -100)"));
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, -1, 2, 3})), Contains("target[1] = -1 is out of range"));
    REQUIRE_THROWS_WITH(cross_entropy(zeros({2, 3, 2}, kFloat64), idx({0, 1, 2, 3}, Shape{2, 2})),
                        Contains("target[1, 1] = 3 is out of range for 3 classes"));
    REQUIRE_THROWS_WITH(cross_entropy(zeros({3}, kFloat64), from_vector(std::vector<std::int64_t>{5}, Shape{})),
                        Contains("cross_entropy: target = 5 is out of range for 3 classes"));
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 10}), {.ignore_index = 3}), Contains("or ignore_index = 3"));
    REQUIRE_NOTHROW(cross_entropy(x, idx({0, 1, 2, 10}), {.ignore_index = 10}));
  }
  SECTION("index targets must be int64") {
    REQUIRE_THROWS_WITH(cross_entropy(x, zeros({4}, kFloat64)),
                        Contains("cross_entropy: target of shape [4] has dtype float64; class indices must be int64") &&
                            Contains("or pass class probabilities of input's shape [4, 10]"));
    REQUIRE_THROWS_WITH(cross_entropy(x, gt(zeros({4}, kFloat64), 0.0)), Contains("has dtype bool; class indices must be int64"));
  }
  SECTION("target shape") {
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2})),
                        Contains("cross_entropy: target of shape [3] does not match input of shape [4, 10]; expected "
                                 "class indices (int64) of shape [4]") &&
                            Contains("or class probabilities of shape [4, 10]"));
    REQUIRE_THROWS_WITH(cross_entropy(zeros({2, 3, 5}, kFloat64), idx({0, 1, 2, 0, 1, 2}, Shape{2, 3})),
                        Contains("expected class indices (int64) of shape [2, 5]"));
    REQUIRE_THROWS_WITH(cross_entropy(x, from_vector(std::vector<std::int64_t>{1}, Shape{})), Contains("does not match"));
  }
  SECTION("probability targets: shape and dtype") {
    REQUIRE_THROWS_WITH(cross_entropy(x, zeros({4, 9}, kFloat64)),
                        Contains("cross_entropy: target of shape [4, 9] has input's rank but not its shape [4, 10]"));
    REQUIRE_THROWS_WITH(cross_entropy(x, zeros({4, 10}, kFloat32)), Contains("input is float64 but target is float32"));
    Generator gen(1);
    REQUIRE_THROWS_WITH(cross_entropy(x, randint(0, 10, Shape{4, 10}, gen)),
                        Contains("target of shape [4, 10] (input's shape) has dtype int64; class probabilities must be "
                                 "float64 like input (class indices have shape [4])"));
  }
  SECTION("weight: length, rank and dtype") {
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 3}), {.weight = ones({9}, kFloat64)}), StartsWith("cross_entropy: weight of shape [9] does not match the 10 classes of input (shape [4, 10]); "
                        "expected a 1-D tensor of shape [10]"));
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 3}), {.weight = ones({1, 10}, kFloat64)}), Contains("weight of shape [1, 10]"));
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 3}), {.weight = ones({10}, kFloat32)}),
                        Contains("cross_entropy: input is float64 but weight is float32"));
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 3}), {.weight = from_vector(std::vector<std::int64_t>(10, 1), Shape{10})}),
                        Contains("cross_entropy: weight has dtype int64 (shape [10]); expected float64"));
  }
  SECTION("label_smoothing outside [0, 1]") {
    for (double eps : {-0.1, 1.5, static_cast<double>(NAN)})
      REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 3}), {.label_smoothing = eps}),
                          Contains("cross_entropy: label_smoothing = ") && Contains("is outside [0, 1]"));
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 3}), {.label_smoothing = 1.5}), Contains("label_smoothing = 1.5"));
  }
  SECTION("no classes, rank 0, undefined, batchmean") {
    REQUIRE_THROWS_WITH(cross_entropy(zeros({4, 0}, kFloat64), idx({0, 0, 0, 0})), StartsWith("cross_entropy: input of shape [4, 0] has no classes (size 0 along the class dim 1); expected C >= 1"));
    REQUIRE_THROWS_WITH(cross_entropy(tensor(1.0, kFloat64), idx({0})),
                        Contains("cross_entropy: input has rank 0 (shape []); expected [C], [N, C] or [N, C, d1, ...]"));
    REQUIRE_THROWS_WITH(cross_entropy(Tensor(), idx({0})), Contains("cross_entropy: input is an undefined Tensor"));
    REQUIRE_THROWS_WITH(cross_entropy(x, Tensor()), Contains("cross_entropy: target is an undefined Tensor"));
    REQUIRE_THROWS_WITH(cross_entropy(idx({0, 1}), idx({0})), Contains("cross_entropy: input has dtype int64"));
    REQUIRE_THROWS_WITH(cross_entropy(x, idx({0, 1, 2, 3}), {.reduction = Reduction::BatchMean}),
                        Contains("cross_entropy: reduction = batchmean is only defined for kl_div"));
  }
}

// ---------------------------------------------------------------- worked example (reference notes 004)

TEST_CASE("cross_entropy: the softmax-regression worked example of the reference notes", "[ops][loss]") {
  // 2 samples, 3 features, 3 classes; the notes write Z = X W + b with W [features, classes];
  // linear() takes PyTorch's layout [out, in] = W^T. Expected values from numpy (float64) by the
  // formulas Z = X W + b, P = softmax(Z), L = -mean log P[n, y_n], dW = X^T (P - Y) / 2,
  // db = sum_n (P - Y) / 2, not from tapegrad.
  // The notes' logits, probabilities and loss (1.079) are right to 3 decimals, but two final figures
  // are not: dW[1][0] and db[0] are printed -0.190, exactly -0.18940 and -0.18948 (-0.189). Some
  // intermediates carry rounding too: sum of sample 2 is 2.1622 (printed 2.163), log P[0, 0] is
  // -0.9561 (-0.957), their sum -2.1572 (-2.158), and X^T (P - Y) is [-0.5683, 0.3773, 0.1910;
  // -0.3788, 0.0036, 0.3752; 0.4971, 0.2276, -0.7247] (printed -0.569, 0.376, 0.498, 0.227 for
  // four of them).
  const Tensor X = tensor({{1.0, 0.5, -0.5}, {0.2, -0.3, 0.8}}, kFloat64);
  Tensor Wt = tensor({{0.1, 0.4, -0.2}, {0.2, -0.1, 0.3}, {0.3, 0.2, 0.1}}, kFloat64).requires_grad_();  // W^T
  Tensor b = f64({0.0, 0.1, -0.1}).requires_grad_();
  const Tensor y = idx({0, 2});
  const Tensor Z = linear(X, Wt, b);
  REQUIRE_ALLCLOSE(Z, tensor({{0.4, 0.10000000000000003, 0.25}, {-0.26, 0.41000000000000003, -0.02}}, kFloat64), 1e-14, 1e-15);
  REQUIRE_ALLCLOSE(softmax(Z, 1),
                   tensor({{0.38438974826089617, 0.2847629293549306, 0.3308473223841733},
                           {0.23665914134933574, 0.46248812629452796, 0.3008527323561363}},
                          kFloat64),
                   1e-14);
  const Tensor L = cross_entropy(Z, y);
  REQUIRE_ALLCLOSE(L, tensor(1.0786163334670544, kFloat64), 1e-14);
  backward(L);
  const Tensor dW = tensor({{-0.2841392117346183, 0.1886302773069181, 0.09550893442770028},
                            {-0.1894014341371763, 0.00181751339455345, 0.18758392074262287},
                            {0.24856621947451024, 0.11380451817907855, -0.36237073765358885}},
                           kFloat64);  // [features, classes], as in the notes
  REQUIRE_ALLCLOSE(Wt.grad(), transpose(dW, 0, 1), 1e-13, 1e-15);
  REQUIRE_ALLCLOSE(b.grad(), f64({-0.18947555519488402, 0.37362552782472924, -0.1841499726298452}), 1e-13, 1e-15);
}

// ---------------------------------------------------------------- nll_loss

TEST_CASE("nll_loss: values match PyTorch; gradcheck and gradgradcheck", "[ops][loss]") {
  // Python: lp = log_softmax(fixture_logits, 1); F.nll_loss(lp, [2, -100, 3], weight=w, reduction=r)
  const Tensor lp = tensor({{-1.8691993073690183, -3.5691993073690185, -0.36919930736901835, -2.0691993073690185},
                            {-0.3440567398819779, -1.6440567398819779, -2.5440567398819782, -3.944056739881978},
                            {-2.6730575613641006, -1.3730575613641003, -2.1730575613641, -0.5730575613641005}},
                           kFloat64);  // log_softmax of fixture_logits (numpy)
  const Tensor t = idx({2, -100, 3});
  const Tensor w = fixture_weight();
  REQUIRE_ALLCLOSE(nll_loss(lp, t, {.weight = w, .reduction = Reduction::None}), f64({0.7383986147380367, 0.0, 0.4584460490912805}), 1e-14);
  REQUIRE_ALLCLOSE(nll_loss(lp, t, {.weight = w}), tensor(0.4274445227961848, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(nll_loss(lp, t, {.weight = w, .reduction = Reduction::Sum}), tensor(1.1968446638293173, kFloat64), 1e-14);
  // cross_entropy = nll_loss(log_softmax)
  REQUIRE_ALLCLOSE(nll_loss(log_softmax(fixture_logits(), 1), t, {.weight = w}), cross_entropy(fixture_logits(), t, {.weight = w}), 1e-15);
  // -inf log-probability at an ignored or zero-weight target contributes 0 (PyTorch: NaN for the latter)
  const Tensor lpm = tensor({{-kInf, -0.1}, {-kInf, -0.2}}, kFloat64);
  REQUIRE(nll_loss(lpm, idx({0, 0}), {.weight = f64({0.0, 1.0}), .reduction = Reduction::Sum}).item() == 0.0);
  REQUIRE(nll_loss(lpm, idx({-100, 1})).item() == 0.2);

  // every target ignored: 0 with zero gradient
  Tensor z = fixture_logits().requires_grad_();
  const Tensor l0 = nll_loss(z, idx({-100, -100, -100}));
  REQUIRE(l0.item() == 0.0);
  backward(l0);
  REQUIRE_ALLCLOSE(z.grad(), zeros({3, 4}, kFloat64), 0, 0);

  Generator gen(104);
  for (const Shape& s : kClassShapes)
    for (bool use_weight : {false, true})
      for (bool with_ignored : {false, true})
        for (Reduction r : kReductions) {
          INFO("shape " << s.str() << " weight " << use_weight << " ignored " << with_ignored << " " << describe(r));
          const std::int64_t C = s[s.rank() == 1 ? 0 : 1];
          std::vector<Tensor> inputs{randn(s, gen, kFloat64).requires_grad_(), random_targets(s, gen, with_ignored, -100)};
          if (use_weight) inputs.push_back(positive(Shape{C}, gen));
          auto f = [r, use_weight](const std::vector<Tensor>& in) {
            return nll_loss(in[0], in[1], {.weight = use_weight ? in[2] : Tensor(), .reduction = r});
          };
          testing::require_gradcheck(f, inputs, /*second_order=*/true);
          // fused and recorded backward agree
          const Tensor l = f(inputs);
          const Tensor g = randn(l.shape(), gen, kFloat64);
          const auto b = grad({l}, {inputs[0]}, {g}, {.create_graph = true});
          const auto a = grad({l}, {inputs[0]}, {g});
          REQUIRE_ALLCLOSE(a[0], b[0].detach(), 1e-14, 1e-15);
        }
}

TEST_CASE("nll_loss: bad input", "[ops][loss][bad]") {
  const Tensor lp = zeros({4, 10}, kFloat64);
  REQUIRE_THROWS_WITH(nll_loss(lp, idx({0, 1, 2, 12})), StartsWith("nll_loss: target[3] = 12 is out of range for 10 classes (expected 0 <= target < 10, or "
                      "ignore_index = -100)"));
  REQUIRE_THROWS_WITH(nll_loss(lp, zeros({4, 10}, kFloat64)),
                      Contains("nll_loss: target of shape [4, 10] has log_probs's rank; expected class indices (int64) of shape [4]"));
  REQUIRE_THROWS_WITH(nll_loss(lp, zeros({4}, kFloat64)), Contains("nll_loss: target of shape [4] has dtype float64; class indices must be int64"));
  REQUIRE_THROWS_WITH(nll_loss(lp, idx({0, 1, 2, 3}), {.weight = ones({3}, kFloat64)}), Contains("nll_loss: weight of shape [3]"));
  REQUIRE_THROWS_WITH(nll_loss(lp, idx({0, 1, 2, 3}), {.reduction = Reduction::BatchMean}), Contains("nll_loss: reduction = batchmean"));
  REQUIRE_THROWS_WITH(nll_loss(zeros({4, 0}, kFloat64), idx({0, 0, 0, 0})), Contains("nll_loss: log_probs of shape [4, 0] has no classes"));
  REQUIRE_THROWS_WITH(nll_loss(tensor(0.0, kFloat64), idx({0})), Contains("nll_loss: log_probs has rank 0"));
}

// ---------------------------------------------------------------- kl_div

TEST_CASE("kl_div: values match PyTorch; target 0 contributes 0", "[ops][loss]") {
  // Python: inp = log_softmax([[0.2, -1, 0.5], [1, 0, -0.5]], 1); F.kl_div(inp, tg, reduction=r)
  const Tensor inp = tensor({{-0.9749569269138376, -2.1749569269138376, -0.6749569269138377},
                             {-0.4643687841079449, -1.464368784107945, -1.964368784107945}},
                            kFloat64);
  const Tensor tg = tensor({{0.3, 0.0, 0.7}, {0.5, 0.25, 0.25}}, kFloat64);
  REQUIRE_ALLCLOSE(kl_div(inp, tg, {.reduction = Reduction::None}),
                   tensor({{-0.06870476322362956, 0.0, 0.22279738808257366}, {-0.11438919822600019, 0.019518605747013584, 0.14451860574701358}}, kFloat64),
                   1e-14, 1e-16);
  REQUIRE_ALLCLOSE(kl_div(inp, tg), tensor(0.033956773021161846, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(kl_div(inp, tg, {.reduction = Reduction::Sum}), tensor(0.20374063812697107, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(kl_div(inp, tg, {.reduction = Reduction::BatchMean}), tensor(0.10187031906348554, kFloat64), 1e-14);
  // log_target: ltg = log([[0.3, 0.1, 0.6], [0.5, 0.25, 0.25]])
  const Tensor ltg = tensor({{-1.2039728043259361, -2.3025850929940455, -0.5108256237659907},
                             {-0.6931471805599453, -1.3862943611198906, -1.3862943611198906}},
                            kFloat64);
  REQUIRE_ALLCLOSE(kl_div(inp, ltg, {.reduction = Reduction::None, .log_target = true}),
                   tensor({{-0.06870476322362955, -0.012762816608020791, 0.09847878188870818}, {-0.11438919822600019, 0.019518605747013584, 0.14451860574701358}}, kFloat64),
                   1e-14, 1e-16);
  REQUIRE_ALLCLOSE(kl_div(inp, ltg, {.reduction = Reduction::BatchMean, .log_target = true}), tensor(0.03332960766254241, kFloat64), 1e-14);

  // target 0 (or log-target -inf) contributes 0 even where input is -inf, and its input gradient is 0
  Tensor x = tensor({{-kInf, -0.5}}, kFloat64).requires_grad_();
  const Tensor l = kl_div(x, tensor({{0.0, 1.0}}, kFloat64), {.reduction = Reduction::Sum});
  REQUIRE(l.item() == 0.5);
  backward(l);
  REQUIRE_ALLCLOSE(x.grad(), tensor({{0.0, -1.0}}, kFloat64), 0, 0);
  REQUIRE(kl_div(x.detach(), tensor({{-kInf, 0.0}}, kFloat64), {.reduction = Reduction::Sum, .log_target = true}).item() == 0.5);
  // an empty input: mean is 0 (nothing to average), as the class losses
  REQUIRE(kl_div(zeros({0, 3}, kFloat64), zeros({0, 3}, kFloat64)).item() == 0.0);
}

TEST_CASE("kl_div: gradcheck and gradgradcheck w.r.t. input and target", "[ops][loss][gradcheck]") {
  Generator gen(105);
  for (const Shape& s : {Shape{2, 3}, Shape{4}, Shape{}, Shape{2, 2, 2}})
    for (bool log_target : {false, true})
      for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum, Reduction::BatchMean}) {
        INFO("shape " << s.str() << " log_target " << log_target << " " << describe(r));
        Tensor x = randn(s, gen, kFloat64).requires_grad_();
        Tensor t = log_target ? randn(s, gen, kFloat64).requires_grad_() : positive(s, gen);
        auto f = [r, log_target](const std::vector<Tensor>& in) {
          return kl_div(in[0], in[1], {.reduction = r, .log_target = log_target});
        };
        testing::require_gradcheck(f, {x, t}, /*second_order=*/true);
      }
}

TEST_CASE("kl_div: bad input", "[ops][loss][bad]") {
  REQUIRE_THROWS_WITH(kl_div(zeros({2, 3}, kFloat64), zeros({3}, kFloat64)), StartsWith("kl_div: target of shape [3] does not match input of shape [2, 3]; expected the same shape"));
  REQUIRE_THROWS_WITH(kl_div(zeros({2, 2}, kFloat64), tensor({{0.5, 0.5}, {1.5, -0.5}}, kFloat64)),
                      Contains("kl_div: target[1, 1] = -0.5 is not a probability; expected target >= 0 (or log_target = true"));
  REQUIRE_NOTHROW(kl_div(zeros({2}, kFloat64), f64({1.5, -0.5}), {.log_target = true}));
  REQUIRE_THROWS_WITH(kl_div(zeros({2}, kFloat64), zeros({2})), Contains("kl_div: input is float64 but target is float32"));
  REQUIRE_THROWS_WITH(kl_div(idx({0, 1}), zeros({2})), Contains("kl_div: input has dtype int64"));
}

// ---------------------------------------------------------------- binary_cross_entropy_with_logits

TEST_CASE("binary_cross_entropy_with_logits: values match PyTorch, stable at extreme logits", "[ops][loss]") {
  // Python: F.binary_cross_entropy_with_logits(bx, by, weight=bw, pos_weight=bpw, reduction=r)
  const Tensor bx = tensor({{0.5, -1.5, 3.0}, {-0.2, 0.0, 2.5}}, kFloat64);
  const Tensor by = tensor({{1.0, 0.0, 0.3}, {0.0, 1.0, 0.8}}, kFloat64);
  const Tensor bw = from_vector({2.0, 0.5}, Shape{2, 1}, kFloat64);
  const Tensor bpw = f64({1.0, 3.0, 0.5});
  REQUIRE_ALLCLOSE(binary_cross_entropy_with_logits(bx, by, {.reduction = Reduction::None}),
                   tensor({{0.4740769841801067, 0.20141327798275246, 2.1485873515737417}, {0.5981388693815918, 0.6931471805599453, 0.5788897342925494}}, kFloat64),
                   1e-14);
  REQUIRE_ALLCLOSE(binary_cross_entropy_with_logits(bx, by), tensor(0.7823755663284478, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(binary_cross_entropy_with_logits(bx, by, {.reduction = Reduction::Sum}), tensor(4.694253397970687, kFloat64), 1e-14);
  const BceWithLogitsOptions o{.weight = bw, .pos_weight = bpw, .reduction = Reduction::None};
  REQUIRE_ALLCLOSE(binary_cross_entropy_with_logits(bx, by, o),
                   tensor({{0.9481539683602134, 0.4028265559655049, 4.282598497675361}, {0.29906943469079594, 1.0397207708399179, 0.2736669202877648}}, kFloat64),
                   1e-14);
  REQUIRE_ALLCLOSE(binary_cross_entropy_with_logits(bx, by, {.weight = bw, .pos_weight = bpw}), tensor(1.2076726913032594, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(binary_cross_entropy_with_logits(bx, by, {.weight = bw, .pos_weight = bpw, .reduction = Reduction::Sum}),
                   tensor(7.246036147819557, kFloat64), 1e-14);
  // float32 agrees
  REQUIRE_ALLCLOSE(binary_cross_entropy_with_logits(bx.to(kFloat32), by.to(kFloat32)).to(kFloat64), tensor(0.7823755663284478, kFloat64), 1e-6);

  // saturated logits (PyTorch: loss [2e4, 0, 0, 1e4], grad [-2, 3.7e-44, 0, 1] with pos_weight 2)
  for (DType dtype : {kFloat64, kFloat32}) {
    Tensor x = tensor({-1e4, -100.0, 100.0, 1e4}, dtype).requires_grad_();
    const Tensor y = tensor({1.0, 0.0, 1.0, 0.0}, dtype);
    const Tensor l = binary_cross_entropy_with_logits(x, y, {.pos_weight = tensor(2.0, dtype), .reduction = Reduction::None});
    // exact: 2 log1p(exp(-100)) = 7.4e-44 at x = 100; tapegrad's exp op returns ~3e-39 for exp(-100)
    // in float32 (Eigen 3.4's vectorised exp clamps), hence the float32 atol
    REQUIRE_ALLCLOSE(l.to(kFloat64), f64({2e4, 0.0, 0.0, 1e4}), 1e-15, dtype == kFloat32 ? 1e-37 : 1e-40);
    backward(l, ones({4}, dtype));
    REQUIRE_ALLCLOSE(x.grad().to(kFloat64), f64({-2.0, 3.7200759760208356e-44, 0.0, 1.0}), 1e-6, dtype == kFloat32 ? 1e-38 : 1e-50);
  }
  // the gradient at x = 0 is sigmoid(0) - y (the smooth form has no kink there)
  Tensor x0 = f64({0.0, 0.0}).requires_grad_();
  backward(binary_cross_entropy_with_logits(x0, f64({1.0, 0.0}), {.reduction = Reduction::Sum}));
  REQUIRE_ALLCLOSE(x0.grad(), f64({-0.5, 0.5}), 1e-15);
}

TEST_CASE("binary_cross_entropy_with_logits: gradcheck and gradgradcheck with weight and pos_weight",
          "[ops][loss][gradcheck]") {
  Generator gen(106);
  const std::vector<std::pair<Shape, Shape>> weight_shapes = {{Shape{}, Shape{}}, {Shape{3}, Shape{3}}, {Shape{2, 1}, Shape{1, 3}}};
  for (const auto& [ws, pws] : weight_shapes)
    for (bool use_w : {false, true})
      for (bool use_pw : {false, true})
        for (Reduction r : kReductions) {
          INFO("weight " << use_w << " " << ws.str() << " pos_weight " << use_pw << " " << pws.str() << " " << describe(r));
          // logits away from 0 is not needed: the smooth form has no kink
          std::vector<Tensor> in{randn(Shape{2, 3}, gen, kFloat64).requires_grad_(), rand(Shape{2, 3}, gen, kFloat64).requires_grad_()};
          const int iw = use_w ? static_cast<int>(in.size()) : -1;
          if (use_w) in.push_back(positive(ws, gen));
          const int ipw = use_pw ? static_cast<int>(in.size()) : -1;
          if (use_pw) in.push_back(positive(pws, gen));
          auto f = [r, iw, ipw](const std::vector<Tensor>& t) {
            BceWithLogitsOptions o;
            if (iw >= 0) o.weight = t[static_cast<std::size_t>(iw)];
            if (ipw >= 0) o.pos_weight = t[static_cast<std::size_t>(ipw)];
            o.reduction = r;
            return binary_cross_entropy_with_logits(t[0], t[1], o);
          };
          testing::require_gradcheck(f, in, /*second_order=*/true);
        }
  // including x = 0 exactly
  testing::require_gradcheck([](const std::vector<Tensor>& t) { return binary_cross_entropy_with_logits(t[0], t[1]); },
                             {f64({0.0, 0.0, 1.0}).requires_grad_(), f64({0.3, 1.0, 0.0}).requires_grad_()}, true);
}

TEST_CASE("binary_cross_entropy_with_logits: bad input", "[ops][loss][bad]") {
  const Tensor x = zeros({2, 3}, kFloat64);
  const char* op = "binary_cross_entropy_with_logits";
  REQUIRE_THROWS_WITH(binary_cross_entropy_with_logits(x, zeros({3}, kFloat64)),
                      StartsWith(fmt::format("{}: target of shape [3] does not match logits of shape [2, 3]; expected the same shape", op)));
  REQUIRE_THROWS_WITH(binary_cross_entropy_with_logits(x, zeros({2, 3})), Contains("logits is float64 but target is float32"));
  REQUIRE_THROWS_WITH(binary_cross_entropy_with_logits(x, x, {.weight = ones({2}, kFloat64)}), Contains("cannot broadcast weight of shape [2]"));
  REQUIRE_THROWS_WITH(binary_cross_entropy_with_logits(x, x, {.weight = ones({4, 2, 3}, kFloat64)}),
                      Contains("weight of shape [4, 2, 3] does not broadcast to logits of shape [2, 3]"));
  REQUIRE_THROWS_WITH(binary_cross_entropy_with_logits(x, x, {.pos_weight = ones({4}, kFloat64)}), Contains(op) && Contains("pos_weight of shape [4]"));
  REQUIRE_THROWS_WITH(binary_cross_entropy_with_logits(x, x, {.pos_weight = ones({3}, kFloat32)}), Contains("logits is float64 but pos_weight is float32"));
  REQUIRE_THROWS_WITH(binary_cross_entropy_with_logits(x, x, {.reduction = Reduction::BatchMean}),
                      Contains(fmt::format("{}: reduction = batchmean is only defined for kl_div", op)));
}

// ---------------------------------------------------------------- mse_loss, l1_loss, smooth_l1_loss

TEST_CASE("regression losses: values match Python for every reduction", "[ops][loss][regression_loss]") {
  // Python (double): d = [a - b for a, b in zip(X, T)]; mse d*d; l1 abs(d);
  // smooth l1: 0.5*d*d/beta if abs(d) < beta else abs(d) - 0.5*beta; sums and sum/6.
  const Tensor x = table_input(), t = table_target();
  const Shape s{2, 3};
  auto check = [&](const Tensor& none, const Tensor& mean, const Tensor& sum, const std::vector<double>& l, double total) {
    REQUIRE_ALLCLOSE(none, from_vector(l, s, kFloat64), 1e-14, 1e-15);
    REQUIRE_ALLCLOSE(sum, tensor(total, kFloat64), 1e-14);
    REQUIRE_ALLCLOSE(mean, tensor(total / 6.0, kFloat64), 1e-14);
  };
  check(mse_loss(x, t, Reduction::None), mse_loss(x, t), mse_loss(x, t, Reduction::Sum),
        {0.04000000000000001, 0.0, 2.25, 4.0, 0.6400000000000001, 0.36}, 7.29);
  check(l1_loss(x, t, Reduction::None), l1_loss(x, t), l1_loss(x, t, Reduction::Sum), {0.2, 0.0, 1.5, 2.0, 0.8, 0.6}, 5.1);
  check(smooth_l1_loss(x, t, Reduction::None), smooth_l1_loss(x, t), smooth_l1_loss(x, t, Reduction::Sum),
        {0.020000000000000004, 0.0, 1.0, 1.5, 0.32000000000000006, 0.18}, 3.02);
  check(smooth_l1_loss(x, t, Reduction::None, 0.5), smooth_l1_loss(x, t, Reduction::Mean, 0.5),
        smooth_l1_loss(x, t, Reduction::Sum, 0.5), {0.04000000000000001, 0.0, 1.25, 1.75, 0.55, 0.35}, 3.94);
  // beta = 0 is l1_loss exactly.
  REQUIRE_ALLCLOSE(smooth_l1_loss(x, t, Reduction::None, 0.0), l1_loss(x, t, Reduction::None), 0, 0);
  // The default reduction is mean; output dtype follows the input (float32 too).
  REQUIRE(mse_loss(x, t).dim() == 0);
  const Tensor l32 = mse_loss(x.to(kFloat32), t.to(kFloat32));
  REQUIRE(l32.dtype() == kFloat32);
  REQUIRE(std::abs(l32.item() - 1.215) < 1e-6);
}

TEST_CASE("regression losses: gradients at chosen points, kinks as PyTorch", "[ops][loss][regression_loss]") {
  // Hand derivatives of the mean over 6 elements, d = [0.2, 0, 1.5, 2, -0.8, -0.6]:
  //   mse 2d/6;  l1 sign(d)/6 (sign(0) = 0, PyTorch);  smooth_l1(beta 1) clamp(d, -1, 1)/6.
  auto grads = [](const std::function<Tensor(const Tensor&, const Tensor&)>& f) {
    Tensor x = table_input().requires_grad_();
    Tensor t = table_target().requires_grad_();
    backward(f(x, t));
    return std::pair{x.grad(), t.grad()};
  };
  const Shape s{2, 3};
  {
    auto [gx, gt] = grads([](const Tensor& x, const Tensor& t) { return mse_loss(x, t); });
    const Tensor e = from_vector({0.06666666666666667, 0.0, 0.5, 0.6666666666666666, -0.26666666666666666, -0.2}, s, kFloat64);
    REQUIRE_ALLCLOSE(gx, e, 1e-13, 1e-15);
    REQUIRE_ALLCLOSE(gt, -e, 1e-13, 1e-15);
  }
  {
    auto [gx, gt] = grads([](const Tensor& x, const Tensor& t) { return l1_loss(x, t); });
    const Tensor e = from_vector({1.0 / 6, 0.0, 1.0 / 6, 1.0 / 6, -1.0 / 6, -1.0 / 6}, s, kFloat64);
    REQUIRE_ALLCLOSE(gx, e, 1e-14, 0);  // element 1: d = 0 gives exactly 0
    REQUIRE_ALLCLOSE(gt, -e, 1e-14, 0);
  }
  {
    auto [gx, gt] = grads([](const Tensor& x, const Tensor& t) { return smooth_l1_loss(x, t); });
    const Tensor e = from_vector({0.2 / 6, 0.0, 1.0 / 6, 1.0 / 6, -0.8 / 6, -0.6 / 6}, s, kFloat64);
    REQUIRE_ALLCLOSE(gx, e, 1e-13, 1e-15);
    REQUIRE_ALLCLOSE(gt, -e, 1e-13, 1e-15);
  }
  // smooth_l1 exactly at |d| = beta: PyTorch's kernel gives sign(d) (its x >= beta branch); both
  // pieces meet there with slope +-1. beta = 0 at d = 0: 0, as l1_loss (PyTorch >= 2.0 dispatches to
  // l1_loss; 1.13's kernel gave -1 there).
  {
    Tensor x = f64({1.0, -0.5, 0.0, 3.0}).requires_grad_();
    backward(smooth_l1_loss(x, f64({0.0, 0.0, 0.0, 2.5}), Reduction::Sum, 0.5));
    REQUIRE_ALLCLOSE(x.grad(), f64({1.0, -1.0, 0.0, 1.0}), 0, 0);
    Tensor y = f64({0.0, 2.0, -2.0}).requires_grad_();
    backward(smooth_l1_loss(y, zeros({3}, kFloat64), Reduction::Sum, 0.0));
    REQUIRE_ALLCLOSE(y.grad(), f64({0.0, 1.0, -1.0}), 0, 0);
  }
  // reduction none: the upstream gradient multiplies elementwise.
  {
    Tensor x = f64({1.0, 2.0}).requires_grad_();
    backward(mse_loss(x, f64({0.5, 3.0}), Reduction::None), f64({10.0, -1.0}));
    REQUIRE_ALLCLOSE(x.grad(), f64({10.0, 2.0}), 1e-15, 0);
  }
}

TEST_CASE("regression losses: gradcheck and gradgradcheck on several shapes", "[ops][loss][regression_loss][gradcheck]") {
  std::uint64_t seed = 100;
  for (const NamedLoss& loss : all_losses())
    for (Reduction r : kReductions)
      for (const Shape& s : kShapes) {
        Generator gen(seed++);
        auto [x, t] = away_from_kinks(s, gen, loss.kink);
        INFO(loss.name << " reduction " << static_cast<int>(r) << " shape " << s.str());
        const Function f = [&loss, r](const std::vector<Tensor>& in) { return loss.f(in[0], in[1], r); };
        testing::require_gradcheck(f, {x, t}, /*second_order=*/true);
      }
}

TEST_CASE("regression losses: create_graph gives mse_loss's second derivative 2/N", "[ops][loss][regression_loss]") {
  Tensor x = f64({0.3, -1.0, 2.0}).requires_grad_();
  const Tensor t = f64({0.0, 0.5, 1.0});
  GradOptions o;
  o.create_graph = true;
  const Tensor gx = grad({mse_loss(x, t)}, {x}, {}, o)[0];
  const Tensor h = grad({sum(gx)}, {x})[0];  // d/dx of sum(2 (x - t) / 3) = 2/3 each
  REQUIRE_ALLCLOSE(h, f64({2.0 / 3, 2.0 / 3, 2.0 / 3}), 1e-15);
}

TEST_CASE("regression losses: empty tensors work forward and backward", "[ops][loss][regression_loss][empty]") {
  for (const NamedLoss& loss : all_losses())
    for (const Shape& s : {Shape{0}, Shape{2, 0, 3}}) {
      INFO(loss.name << " shape " << s.str());
      for (Reduction r : kReductions) {
        Tensor x = zeros(s, kFloat64).requires_grad_();
        Tensor t = zeros(s, kFloat64).requires_grad_();
        const Tensor l = loss.f(x, t, r);
        if (r == Reduction::None) {
          REQUIRE(l.shape() == s);
          backward(l, zeros(s, kFloat64));
        } else {
          // sum of nothing is 0; mean of nothing is 0 too (tapegrad's policy, as kl_div; PyTorch: NaN)
          REQUIRE(l.dim() == 0);
          REQUIRE(l.item() == 0.0);
          backward(l);
        }
        // An undefined grad or an empty one: either way no elements, and nothing threw.
        if (x.grad().defined()) REQUIRE(x.grad().shape() == s);
        if (t.grad().defined()) REQUIRE(t.grad().shape() == s);
      }
    }
}

TEST_CASE("regression losses: bad input throws, naming the op, the argument and the fix", "[ops][loss][regression_loss][bad]") {
  const Tensor a = zeros({2, 3}, kFloat64);
  for (const char* op : {"mse_loss", "l1_loss", "smooth_l1_loss"}) {
    INFO(op);
    const std::string name = op;
    auto call = [&](const Tensor& x, const Tensor& t, Reduction r) {
      if (name == "mse_loss") return mse_loss(x, t, r);
      if (name == "l1_loss") return l1_loss(x, t, r);
      return smooth_l1_loss(x, t, r);
    };
    // Shapes differ (PyTorch would broadcast with a warning): an error here, even when they broadcast.
    REQUIRE_THROWS_AS(call(zeros({3, 1}, kFloat64), zeros({3}, kFloat64), Reduction::Mean), InvalidArgument);
    REQUIRE_THROWS_WITH(call(zeros({3, 1}, kFloat64), zeros({3}, kFloat64), Reduction::Mean),
                        Contains(name + ": target of shape [3] does not match input of shape [3, 1]") &&
                            Contains("expected the same shape"));
    REQUIRE_THROWS_WITH(call(a, zeros({2, 3}, kFloat32), Reduction::Mean),
                        Contains(name + ": input is float64 but target is float32"));
    REQUIRE_THROWS_WITH(call(zeros({2}, kInt64), zeros({2}, kInt64), Reduction::Mean),
                        Contains(name + ": input has dtype int64") && Contains("expected float32 or float64"));
    REQUIRE_THROWS_WITH(call(a, Tensor(), Reduction::Mean), Contains(name + ": target is an undefined Tensor"));
    REQUIRE_THROWS_WITH(call(a, a, Reduction::BatchMean), Contains(name + ": reduction = batchmean is only defined for kl_div"));
  }
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, -1.0),
                      Contains("smooth_l1_loss: beta = -1; expected a finite beta >= 0"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, std::nan("")), Contains("smooth_l1_loss: beta = nan"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, std::numeric_limits<double>::infinity()),
                      Contains("smooth_l1_loss: beta = inf"));
  // Errors name the caller's line (the ops open a SiteScope with their SourceLocation).
  REQUIRE_THROWS_WITH(mse_loss(a, zeros({3}, kFloat64)), Contains("(called from ") && Contains("test_loss.cpp:"));
  REQUIRE_THROWS_WITH(l1_loss(a, zeros({3}, kFloat64)), Contains("test_loss.cpp:"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, -2.0), Contains("test_loss.cpp:"));
}

TEST_CASE("regression losses: the tape names them and inspect knows their VJPs", "[ops][loss][regression_loss][inspect]") {
  Tensor x = zeros({2}, kFloat64).requires_grad_();
  const Tensor t = ones({2}, kFloat64);
  for (const char* op : {"mse_loss", "l1_loss", "smooth_l1_loss"}) {
    const std::string name = op;
    const Tensor l = name == "mse_loss" ? mse_loss(x, t) : name == "l1_loss" ? l1_loss(x, t) : smooth_l1_loss(x, t);
    const char* producer = producer_name(l);
    REQUIRE(producer != nullptr);
    REQUIRE(std::string(producer) == name);
    REQUIRE_FALSE(vjp_formula(l).empty());
  }
}

// ---------------------------------------------------------------- Reduction values

TEST_CASE("losses: a Reduction value outside the enum is rejected, naming the loss", "[issue11][ops][loss][bad]") {
  const auto bad = static_cast<Reduction>(7);
  const Tensor x = tensor({{0.5, -1.0, 2.0}, {0.1, 0.2, 0.3}}, kFloat64);
  const Tensor t = idx({2, 0}, Shape{2});
  REQUIRE_THAT(error_of([&] { cross_entropy(x, t, {.reduction = bad}); }),
               StartsWith("cross_entropy:") && Contains("reduction") && Contains("7") && Contains("Mean"));
  REQUIRE_THAT(error_of([&] { cross_entropy(x.detach().requires_grad_(), softmax(x, 1), {.reduction = bad}); }),
               StartsWith("cross_entropy:") && Contains("reduction"));
  REQUIRE_THAT(error_of([&] { nll_loss(log_softmax(x, 1), t, {.reduction = bad}); }),
               StartsWith("nll_loss:") && Contains("reduction") && Contains("7"));
  REQUIRE_THAT(error_of([&] { kl_div(log_softmax(x, 1), softmax(x, 1), {.reduction = bad}); }),
               StartsWith("kl_div:") && Contains("reduction") && Contains("7") && Contains("BatchMean"));
  REQUIRE_THAT(error_of([&] { binary_cross_entropy_with_logits(x, ones_like(x), {.reduction = bad}); }),
               StartsWith("binary_cross_entropy_with_logits:") && Contains("reduction") && Contains("7"));
  REQUIRE_THAT(error_of([&] { cross_entropy(x, t, {.reduction = static_cast<Reduction>(-1)}); }),
               StartsWith("cross_entropy:") && Contains("-1"));
}
