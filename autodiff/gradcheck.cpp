// SPDX-License-Identifier: MIT
#include "autodiff/gradcheck.hpp"

#include <cmath>
#include <limits>
#include <ostream>

#include <nlohmann/json.hpp>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"

namespace tapegrad {

namespace {

// Internally every checked function has several outputs (gradgradcheck checks the gradient of
// every input at once); its Jacobian w.r.t. one input stacks the outputs' rows in order.
using MultiFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Where each output's rows start in the stacked Jacobian.
struct Layout {
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;
  std::vector<std::int64_t> offsets;
  std::int64_t rows = 0;
};

// A dense row-major [rows, cols] matrix of doubles (undefined input: cols = 0, empty).
struct Matrix {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::vector<double> v;
  Matrix() = default;
  Matrix(std::int64_t r, std::int64_t c) : rows(r), cols(c), v(static_cast<std::size_t>(r * c), 0.0) {}
  double& operator()(std::int64_t i, std::int64_t j) { return v[static_cast<std::size_t>(i * cols + j)]; }
  double operator()(std::int64_t i, std::int64_t j) const { return v[static_cast<std::size_t>(i * cols + j)]; }
  Tensor to_tensor() const { return from_vector(v, Shape{rows, cols}, kFloat64); }
};


// ---- validation ----

std::vector<bool> validate_inputs(const char* who, const std::vector<Tensor>& inputs) {
  if (inputs.empty())
    throw InvalidArgument(fmt::format("{}: no inputs (expected at least one tensor with requires_grad_() set)", who));
  std::vector<bool> req(inputs.size(), false);
  bool any = false;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].defined())
      throw InvalidArgument(fmt::format("{}: input {} is an undefined Tensor (expected a tensor with a value)", who, k));
    req[k] = inputs[k].requires_grad();
    any = any || req[k];
  }
  if (!any)
    throw InvalidArgument(fmt::format(
        "{}: none of the {} inputs requires grad, so there is nothing to differentiate; call requires_grad_() on "
        "the inputs to check (the single-tensor overload differentiates with respect to x regardless)",
        who, inputs.size()));
  return req;
}

void validate_eps(const char* who, double eps) {
  if (!(eps > 0.0) || !std::isfinite(eps))
    throw InvalidArgument(fmt::format("{}: eps = {} (expected a positive finite step; PyTorch's default is 1e-6)", who, eps));
}

void validate_options(const char* who, const GradcheckOptions& o) {
  validate_eps(who, o.eps);
  if (!(o.atol >= 0.0) || !(o.rtol >= 0.0))
    throw InvalidArgument(fmt::format("{}: atol = {} and rtol = {} (expected both >= 0 and not NaN)", who, o.atol, o.rtol));
}

void validate_outputs(const char* who, const std::vector<Tensor>& outs) {
  for (std::size_t o = 0; o < outs.size(); ++o) {
    if (!outs[o].defined())
      throw InvalidArgument(fmt::format("{}: the function returned an undefined Tensor (output {})", who, o));
    if (!is_floating(outs[o].dtype()))
      throw InvalidArgument(fmt::format("{}: the function returned a {} tensor (output {}, shape {}); expected float32 or "
                                        "float64 to differentiate", who, dtype_name(outs[o].dtype()), o, outs[o].shape()));
  }
}

Layout layout_of(const std::vector<Tensor>& outs) {
  Layout l;
  for (const Tensor& t : outs) {
    l.shapes.push_back(t.shape());
    l.dtypes.push_back(t.dtype());
    l.offsets.push_back(l.rows);
    l.rows += t.numel();
  }
  return l;
}

// Output values, stacked, as doubles; checks the shapes did not change between evaluations.
std::vector<double> flatten(const char* who, const std::vector<Tensor>& outs, const Layout& l) {
  validate_outputs(who, outs);
  if (outs.size() != l.shapes.size())
    throw RuntimeError(fmt::format("{}: the function returned {} outputs, then {}; it must be deterministic in shape",
                                   who, l.shapes.size(), outs.size()));
  std::vector<double> v;
  v.reserve(static_cast<std::size_t>(l.rows));
  for (std::size_t o = 0; o < outs.size(); ++o) {
    if (outs[o].shape() != l.shapes[o])
      throw RuntimeError(fmt::format("{}: the function returned shape {}, then {} for perturbed inputs; it must return the "
                                     "same shape for every input value", who, l.shapes[o], outs[o].shape()));
    const auto vo = outs[o].to_vector();
    v.insert(v.end(), vo.begin(), vo.end());
  }
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Leaves standing in for the inputs, so the caller's graph, .grad and values are never touched:
// inputs to differentiate become fresh leaves with requires_grad, the others are shared as they
// are. Perturbed copies (own_storage) get their own values to write into; reverse-mode passes
// share the inputs' storage.
std::vector<Tensor> stand_in_leaves(const std::vector<Tensor>& inputs, const std::vector<bool>& req, bool own_storage) {
  std::vector<Tensor> l(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (req[k]) {
      l[k] = own_storage ? inputs[k].contiguous_copy_detached() : inputs[k].detach();
      l[k].requires_grad_(true);
    } else {
      l[k] = inputs[k];
    }
  }
  return l;
}
std::vector<Tensor> perturbable_copies(const std::vector<Tensor>& inputs, const std::vector<bool>& req) {
  return stand_in_leaves(inputs, req, /*own_storage=*/true);
}
std::vector<Tensor> fresh_leaves(const std::vector<Tensor>& inputs, const std::vector<bool>& req) {
  return stand_in_leaves(inputs, req, /*own_storage=*/false);
}

// Evaluates F once, without recording, on the inputs' values; gives the output layout.
Layout probe(const char* who, const MultiFunction& F, const std::vector<Tensor>& copies) {
  NoGradGuard no_grad;
  std::vector<Tensor> outs = F(copies);
  validate_outputs(who, outs);
  return layout_of(outs);
}

// ---- the two Jacobians ----

// Central differences, one input element at a time. The divisor is the step actually taken,
// (x + eps) - (x - eps) as stored in the input's dtype, which equals 2 eps up to the rounding of
// x +- eps (and is much more accurate than 2 eps when that rounding is not negligible, e.g.
// large |x| or float32).
// With `sides`, also the one-sided differences (f(x) - f(x - eps)) / (x - xm) and
// (f(x + eps) - f(x)) / (xp - x), for kink detection.
struct OneSided {
  std::vector<Matrix> left, right;
};

std::vector<Matrix> numeric_core(const char* who, const MultiFunction& F, const std::vector<Tensor>& inputs,
                                 const std::vector<bool>& req, double eps, Layout* layout_out,
                                 std::vector<std::string>* warnings, OneSided* sides = nullptr) {
  std::vector<Tensor> c = perturbable_copies(inputs, req);
  const Layout l = probe(who, F, c);
  if (layout_out) *layout_out = l;
  NoGradGuard no_grad;
  std::vector<double> base;
  if (sides) {
    base = flatten(who, F(c), l);
    sides->left.assign(inputs.size(), Matrix());
    sides->right.assign(inputs.size(), Matrix());
  }
  std::vector<Matrix> J(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!req[k]) continue;
    const std::int64_t n = c[k].numel();
    J[k] = Matrix(l.rows, n);
    if (sides) {
      sides->left[k] = Matrix(l.rows, n);
      sides->right[k] = Matrix(l.rows, n);
    }
    bool step_lost = false;
    for (std::int64_t j = 0; j < n; ++j) {
      dispatch_float(c[k].dtype(), [&]<class T>() {
        T* p = c[k].mutable_data<T>();
        const T x = p[j];
        p[j] = static_cast<T>(static_cast<double>(x) + eps);
        const double xp = static_cast<double>(p[j]);
        const std::vector<double> plus = flatten(who, F(c), l);
        p[j] = static_cast<T>(static_cast<double>(x) - eps);
        const double xm = static_cast<double>(p[j]);
        const std::vector<double> minus = flatten(who, F(c), l);
        p[j] = x;
        const double h = xp - xm;
        if (h == 0.0) step_lost = true;
        for (std::int64_t i = 0; i < l.rows; ++i) {
          const auto si = static_cast<std::size_t>(i);
          J[k](i, j) = h != 0.0 ? (plus[si] - minus[si]) / h : std::numeric_limits<double>::quiet_NaN();
          if (sides) {
            const double hl = static_cast<double>(x) - xm, hr = xp - static_cast<double>(x);
            const double nan = std::numeric_limits<double>::quiet_NaN();
            sides->left[k](i, j) = hl != 0.0 ? (base[si] - minus[si]) / hl : nan;
            sides->right[k](i, j) = hr != 0.0 ? (plus[si] - base[si]) / hr : nan;
          }
        }
      });
    }
    if (step_lost && warnings)
      warnings->push_back(fmt::format("input {}: eps = {} is below the resolution of some of its values (x + eps == x - eps "
                                      "in {}); their numeric derivatives are NaN; increase eps or use float64",
                                      k, eps, dtype_name(c[k].dtype())));
  }
  return J;
}

// Reverse mode: row i of the stacked Jacobian is the VJP with a one-hot grad_output e_i.
// Outputs that do not require grad, and inputs an output does not use, give zeros.
std::vector<Matrix> analytic_core(const char* who, const MultiFunction& F, const std::vector<Tensor>& inputs,
                                  const std::vector<bool>& req, const Layout* expected) {
  std::vector<Tensor> leaves = fresh_leaves(inputs, req);
  std::vector<Tensor> diff;
  std::vector<std::size_t> diff_pos;
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (req[k]) {
      diff.push_back(leaves[k]);
      diff_pos.push_back(k);
    }
  GradModeGuard grad_on(true);
  const std::vector<Tensor> outs = F(leaves);
  validate_outputs(who, outs);
  const Layout l = layout_of(outs);
  if (expected) (void)flatten(who, outs, *expected);  // same shapes as the numeric pass

  std::vector<Matrix> J(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (req[k]) J[k] = Matrix(l.rows, inputs[k].numel());
  for (std::size_t o = 0; o < outs.size(); ++o) {
    if (!outs[o].requires_grad()) continue;  // a constant output: zero rows
    for (std::int64_t i = 0; i < outs[o].numel(); ++i) {
      Tensor e = zeros(outs[o].shape(), outs[o].dtype());
      dispatch_float(e.dtype(), [&]<class T>() { e.mutable_data<T>()[i] = T(1); });
      const std::vector<Tensor> gs =
          grad({outs[o]}, diff, {e}, GradOptions{.retain_graph = true, .create_graph = false, .allow_unused = true});
      for (std::size_t d = 0; d < diff.size(); ++d) {
        if (!gs[d].defined()) continue;
        const auto row = gs[d].to_vector();
        Matrix& m = J[diff_pos[d]];
        for (std::int64_t j = 0; j < m.cols; ++j) m(l.offsets[o] + i, j) = row[static_cast<std::size_t>(j)];
      }
    }
  }
  return J;
}

// ---- comparison ----

struct EntryCheck {
  double err;    // |a - n|, NaN when either is NaN
  double ratio;  // err / (atol + rtol |n|); > 1 fails; inf for NaN
  bool pass;
};

EntryCheck check_entry(double a, double n, double atol, double rtol) {
  if (std::isnan(a) || std::isnan(n))
    return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(), false};
  if (a == n) return {0.0, 0.0, true};  // includes equal infinities
  const double err = std::abs(a - n);
  const double tol = atol + rtol * std::abs(n);
  const bool pass = err <= tol;
  double ratio = tol > 0.0 ? err / tol : std::numeric_limits<double>::infinity();
  if (std::isnan(ratio)) ratio = std::numeric_limits<double>::infinity();  // inf / inf
  return {err, ratio, pass};
}

void add_entry(InputCheck& ic, double& worst_ratio, double a, double n, double atol, double rtol, std::int64_t out_flat,
               std::int64_t in_flat, bool* first) {
  const EntryCheck e = check_entry(a, n, atol, rtol);
  if (!e.pass) ic.ok = false;
  if (std::isnan(e.err) || std::isnan(ic.max_abs_error)) {
    ic.max_abs_error = std::numeric_limits<double>::quiet_NaN();
  } else {
    ic.max_abs_error = std::max(ic.max_abs_error, e.err);
  }
  if (!(e.err <= atol)) {  // exceeds atol (or NaN)
    const double rel = std::isnan(e.err) ? std::numeric_limits<double>::quiet_NaN()
                                         : e.err / std::max(std::abs(n), std::numeric_limits<double>::min());
    if (std::isnan(rel) || std::isnan(ic.max_rel_error))
      ic.max_rel_error = std::numeric_limits<double>::quiet_NaN();
    else
      ic.max_rel_error = std::max(ic.max_rel_error, rel);
  }
  if (*first || e.ratio > worst_ratio) {
    *first = false;
    worst_ratio = e.ratio;
    ic.worst_output = out_flat;
    ic.worst_element = in_flat;
    ic.analytic = a;
    ic.numeric = n;
  }
}

std::string input_name(std::size_t k, const Tensor& t) {
  return t.name().empty() ? fmt::format("input {}", k) : fmt::format("input {} ({})", k, t.name());
}

GradcheckReport start_report(const char* check, const GradcheckOptions& options, const std::vector<Tensor>& inputs,
                             const std::vector<bool>& req) {
  GradcheckReport r;
  r.check = check;
  r.options = options;
  r.dtype = kFloat64;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    InputCheck ic;
    ic.input = k;
    ic.name = input_name(k, inputs[k]);
    ic.shape = inputs[k].shape();
    ic.checked = req[k];
    r.inputs.push_back(std::move(ic));
    if (req[k] && inputs[k].dtype() == kFloat32) r.dtype = kFloat32;
  }
  if (r.dtype == kFloat32)
    r.warnings.push_back(
        "float32 inputs: central differences are not accurate enough; use float64 (convert with .to(kFloat64))");
  return r;
}

void fill_output_index(InputCheck& ic, const Layout& l) {
  if (ic.worst_output < 0) return;
  for (std::size_t o = 0; o < l.shapes.size(); ++o) {
    if (ic.worst_output < l.offsets[o] + l.shapes[o].numel()) {
      ic.worst_output_tensor = o;
      ic.worst_output_index = unravel_index(l.shapes[o], ic.worst_output - l.offsets[o]);
      return;
    }
  }
}

std::vector<std::int64_t> output_multi_index(const Layout& l, std::int64_t flat) {
  for (std::size_t o = 0; o < l.shapes.size(); ++o)
    if (flat < l.offsets[o] + l.shapes[o].numel()) return unravel_index(l.shapes[o], flat - l.offsets[o]);
  return {};
}

// The full check: every Jacobian entry of every input that requires grad.
void full_check(const char* who, const MultiFunction& F, const std::vector<Tensor>& inputs, const std::vector<bool>& req,
                GradcheckReport& r) {
  const GradcheckOptions& opt = r.options;
  Layout l;
  OneSided sides;
  const std::vector<Matrix> num = numeric_core(who, F, inputs, req, opt.eps, &l, &r.warnings, opt.detect_kinks ? &sides : nullptr);
  const std::vector<Matrix> ana = analytic_core(who, F, inputs, req, &l);
  r.outputs = l.shapes;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!req[k]) continue;
    InputCheck& ic = r.inputs[k];
    double worst = 0.0;
    bool first = true;
    for (std::int64_t i = 0; i < num[k].rows; ++i)
      for (std::int64_t j = 0; j < num[k].cols; ++j) {
        const double a = ana[k](i, j), n = num[k](i, j);
        // Kinks in float64 only: in float32 the one-sided differences are mostly rounding noise.
        if (opt.detect_kinks && inputs[k].dtype() == kFloat64) {
          const double left = sides.left[k](i, j), right = sides.right[k](i, j);
          if (detail::judge_entry(a, n, left, right, opt.atol, opt.rtol, true) == detail::EntryVerdict::Kink) {
            ic.kinks.push_back(Kink{i, output_multi_index(l, i), j, unravel_index(ic.shape, j), left, right, a});
            continue;
          }
        }
        add_entry(ic, worst, a, n, opt.atol, opt.rtol, i, j, &first);
      }
    if (ic.worst_element >= 0) ic.worst_index = unravel_index(ic.shape, ic.worst_element);
    fill_output_index(ic, l);
  }
}

// Fast mode: per input k, compare u^T J_k v_k by reverse mode against the central difference
// of <u, F(x + t v_k)> at t = 0. u (over all outputs) and the v_k are seeded standard normals.
void fast_check(const char* who, const MultiFunction& F, const std::vector<Tensor>& inputs, const std::vector<bool>& req,
                GradcheckReport& r) {
  const GradcheckOptions& opt = r.options;
  std::vector<Tensor> c = perturbable_copies(inputs, req);
  const Layout l = probe(who, F, c);
  r.outputs = l.shapes;

  Generator gen(opt.seed);
  std::vector<Tensor> u;  // one per output, in its dtype
  std::vector<double> u_flat;
  for (std::size_t o = 0; o < l.shapes.size(); ++o) {
    u.push_back(randn(l.shapes[o], gen, kFloat64));
    const auto v = u.back().to_vector();
    u_flat.insert(u_flat.end(), v.begin(), v.end());
    u.back() = u.back().to(l.dtypes[o]);
  }
  std::vector<std::vector<double>> v(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (req[k]) v[k] = randn(inputs[k].shape(), gen, kFloat64).to_vector();

  // Reverse mode: one backward of <u, F(x)> gives u^T J_k for every k.
  std::vector<double> analytic(inputs.size(), 0.0);
  {
    std::vector<Tensor> leaves = fresh_leaves(inputs, req);
    std::vector<Tensor> diff;
    std::vector<std::size_t> diff_pos;
    for (std::size_t k = 0; k < inputs.size(); ++k)
      if (req[k]) {
        diff.push_back(leaves[k]);
        diff_pos.push_back(k);
      }
    GradModeGuard grad_on(true);
    const std::vector<Tensor> outs = F(leaves);
    (void)flatten(who, outs, l);
    std::vector<Tensor> live, seeds;
    for (std::size_t o = 0; o < outs.size(); ++o)
      if (outs[o].requires_grad()) {
        live.push_back(outs[o]);
        seeds.push_back(u[o]);
      }
    if (!live.empty()) {
      const std::vector<Tensor> gs = grad(live, diff, seeds, GradOptions{.allow_unused = true});
      for (std::size_t d = 0; d < diff.size(); ++d)
        if (gs[d].defined()) analytic[diff_pos[d]] = dot(gs[d].to_vector(), v[diff_pos[d]]);
    }
  }

  NoGradGuard no_grad;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!req[k]) continue;
    const Tensor original = inputs[k].contiguous_copy_detached();
    const auto set_along = [&](double t) {
      dispatch_float(c[k].dtype(), [&]<class T>() {
        const T* x = original.data<T>();
        T* p = c[k].mutable_data<T>();
        for (std::int64_t j = 0; j < c[k].numel(); ++j)
          p[j] = static_cast<T>(static_cast<double>(x[j]) + t * v[k][static_cast<std::size_t>(j)]);
      });
    };
    set_along(opt.eps);
    const double plus = dot(u_flat, flatten(who, F(c), l));
    set_along(-opt.eps);
    const double minus = dot(u_flat, flatten(who, F(c), l));
    set_along(0.0);
    const double numeric = (plus - minus) / (2.0 * opt.eps);
    InputCheck& ic = r.inputs[k];
    double worst = 0.0;
    bool first = true;
    add_entry(ic, worst, analytic[k], numeric, opt.atol, opt.rtol, -1, -1, &first);
  }
}

MultiFunction as_multi(const Function& f) {
  return [f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in)}; };
}

Function unary_as_function(const UnaryFunction& f) {
  return [f](const std::vector<Tensor>& in) { return f(in.at(0)); };
}

// The single-tensor overloads differentiate with respect to x whether or not it requires grad.
Tensor as_differentiable(const char* who, const Tensor& x) {
  check_floating(who, "x", x);
  if (x.requires_grad()) return x;
  Tensor l = x.detach();
  l.requires_grad_(true);
  return l;
}

// ---- printing ----

std::string fmt_index(const std::vector<std::int64_t>& idx) { return fmt::format("[{}]", fmt::join(idx, ", ")); }

nlohmann::json number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

}  // namespace

namespace detail {
EntryVerdict judge_entry(double a, double n, double left, double right, double atol, double rtol, bool detect_kinks) {
  if (detect_kinks && std::isfinite(a) && std::isfinite(left) && std::isfinite(right)) {
    // A kink: the one-sided slopes are distinguishable at the check's own tolerance. Then the
    // analytic value must be a subgradient: inside [min(left, right), max(left, right)].
    const double tol = atol + rtol * std::max(std::abs(left), std::abs(right));
    if (std::abs(right - left) > tol) {
      const double lo = std::min(left, right), hi = std::max(left, right);
      return a >= lo - tol && a <= hi + tol ? EntryVerdict::Kink : EntryVerdict::Fail;
    }
  }
  return check_entry(a, n, atol, rtol).pass ? EntryVerdict::Pass : EntryVerdict::Fail;
}
}  // namespace detail

// ---- public API ----

std::vector<Tensor> numerical_jacobian(const Function& f, const std::vector<Tensor>& inputs, double eps) {
  const char* who = "numerical_jacobian";
  if (!f) throw InvalidArgument("numerical_jacobian: f is empty (expected a callable)");
  validate_eps(who, eps);
  const std::vector<bool> req = validate_inputs(who, inputs);
  const std::vector<Matrix> J = numeric_core(who, as_multi(f), inputs, req, eps, nullptr, nullptr);
  std::vector<Tensor> out(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (req[k]) out[k] = J[k].to_tensor();
  return out;
}

std::vector<Tensor> jacobian(const Function& f, const std::vector<Tensor>& inputs) {
  const char* who = "jacobian";
  if (!f) throw InvalidArgument("jacobian: f is empty (expected a callable)");
  const std::vector<bool> req = validate_inputs(who, inputs);
  const std::vector<Matrix> J = analytic_core(who, as_multi(f), inputs, req, nullptr);
  std::vector<Tensor> out(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (req[k]) out[k] = J[k].to_tensor();
  return out;
}

Tensor jacobian(const UnaryFunction& f, const Tensor& x) {
  if (!f) throw InvalidArgument("jacobian: f is empty (expected a callable)");
  return jacobian(unary_as_function(f), std::vector<Tensor>{as_differentiable("jacobian", x)}).at(0);
}

GradcheckReport gradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  const char* who = "gradcheck";
  if (!f) throw InvalidArgument("gradcheck: f is empty (expected a callable)");
  validate_options(who, options);
  const std::vector<bool> req = validate_inputs(who, inputs);
  GradcheckReport r = start_report("gradcheck", options, inputs, req);
  if (options.fast_mode)
    fast_check(who, as_multi(f), inputs, req, r);
  else
    full_check(who, as_multi(f), inputs, req, r);
  return r;
}

GradcheckReport gradcheck(const UnaryFunction& f, const Tensor& x, const GradcheckOptions& options) {
  if (!f) throw InvalidArgument("gradcheck: f is empty (expected a callable)");
  return gradcheck(unary_as_function(f), std::vector<Tensor>{as_differentiable("gradcheck", x)}, options);
}

// PyTorch's gradgradcheck: with a fixed random cotangent g, the function
//   F(x_0, ..., x_{n-1}, g) = (dL/dx_k for every x_k requiring grad),  L = <g, f(x)>
// is gradchecked. Its numeric Jacobian comes from central differences of first-order backward
// passes; its analytic Jacobian from backward through a backward recorded with create_graph.
// The rows w.r.t. x are second derivatives g^T d2f/dx dx; those w.r.t. g are J^T again.
GradcheckReport gradgradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  const char* who = "gradgradcheck";
  if (!f) throw InvalidArgument("gradgradcheck: f is empty (expected a callable)");
  validate_options(who, options);
  const std::vector<bool> req = validate_inputs(who, inputs);

  Tensor y0;
  {
    NoGradGuard no_grad;
    std::vector<Tensor> c = perturbable_copies(inputs, req);
    y0 = f(c);
    validate_outputs(who, {y0});
  }
  // g from its own stream so it does not repeat fast mode's directions.
  Generator gen(options.seed ^ 0x9E3779B97F4A7C15ull);
  Tensor g = randn(y0.shape(), gen, kFloat64).to(y0.dtype());
  g.requires_grad_(true);
  g.set_name("grad_output");

  const std::size_t n = inputs.size();
  MultiFunction F = [f, n, req](const std::vector<Tensor>& in) {
    // Recording is on inside, even when the caller evaluates F without it (numeric pass);
    // the first backward is itself recorded only when the caller records (analytic pass).
    const bool create = GradMode::is_enabled();
    GradModeGuard grad_on(true);
    const std::vector<Tensor> xs(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
    const Tensor& gv = in[n];
    std::vector<Tensor> diff;
    for (std::size_t k = 0; k < n; ++k)
      if (req[k]) diff.push_back(xs[k]);
    const Tensor y = f(xs);
    validate_outputs("gradgradcheck", {y});
    if (y.shape() != gv.shape() || y.dtype() != gv.dtype())
      throw RuntimeError(fmt::format("gradgradcheck: f returned shape {} ({}), then {} ({}); it must be deterministic in "
                                     "shape and dtype", gv.shape(), dtype_name(gv.dtype()), y.shape(), dtype_name(y.dtype())));
    std::vector<Tensor> gs(diff.size());
    if (y.requires_grad())
      gs = grad({y}, diff, {gv}, GradOptions{.retain_graph = false, .create_graph = create, .allow_unused = true});
    for (std::size_t d = 0; d < gs.size(); ++d)
      if (!gs[d].defined()) gs[d] = zeros_like(diff[d]);
    return gs;
  };

  std::vector<Tensor> ext = inputs;
  ext.push_back(g);
  std::vector<bool> ext_req = req;
  ext_req.push_back(true);
  GradcheckReport r = start_report("gradgradcheck", options, ext, ext_req);
  r.inputs.back().name = "grad_output";
  if (options.fast_mode)
    fast_check(who, F, ext, ext_req, r);
  else
    full_check(who, F, ext, ext_req, r);
  return r;
}

GradcheckReport gradgradcheck(const UnaryFunction& f, const Tensor& x, const GradcheckOptions& options) {
  if (!f) throw InvalidArgument("gradgradcheck: f is empty (expected a callable)");
  return gradgradcheck(unary_as_function(f), std::vector<Tensor>{as_differentiable("gradgradcheck", x)}, options);
}

namespace {
// The gradient of a scalar f at a fresh leaf, recorded (create_graph) so it can be differentiated
// again; undefined when f does not depend on x.
struct FirstGrad {
  Tensor x;   // the leaf
  Tensor gx;  // df/dx, recorded
};

FirstGrad first_grad(const char* who, const UnaryFunction& f, const Tensor& x) {
  if (!f) throw InvalidArgument(fmt::format("{}: f is empty (expected a callable)", who));
  check_floating(who, "x", x);
  FirstGrad fg;
  fg.x = x.detach();
  fg.x.requires_grad_(true);
  const Tensor y = f(fg.x);
  validate_outputs(who, {y});
  if (y.numel() != 1)
    throw InvalidArgument(fmt::format("{}: f returned shape {} ({} elements); expected a single element (a scalar function)",
                                      who, y.shape(), y.numel()));
  if (y.requires_grad())
    fg.gx = grad({y}, {fg.x}, {}, GradOptions{.create_graph = true, .allow_unused = true}).at(0);
  return fg;
}
}  // namespace

Tensor hessian(const UnaryFunction& f, const Tensor& x) {
  GradModeGuard grad_on(true);
  const FirstGrad fg = first_grad("hessian", f, x);
  const std::int64_t n = x.numel();
  Matrix H(n, n);
  if (fg.gx.defined() && fg.gx.requires_grad()) {
    for (std::int64_t i = 0; i < n; ++i) {
      Tensor e = zeros(fg.gx.shape(), fg.gx.dtype());
      dispatch_float(e.dtype(), [&]<class T>() { e.mutable_data<T>()[i] = T(1); });
      const Tensor row = grad({fg.gx}, {fg.x}, {e}, GradOptions{.retain_graph = true, .allow_unused = true}).at(0);
      if (!row.defined()) continue;
      const auto v = row.to_vector();
      for (std::int64_t j = 0; j < n; ++j) H(i, j) = v[static_cast<std::size_t>(j)];
    }
  }
  return H.to_tensor().to(x.dtype());  // computed in double, returned in x's dtype as hvp does
}

Tensor hvp(const UnaryFunction& f, const Tensor& x, const Tensor& v) {
  check_floating("hvp", "v", v);
  check_floating("hvp", "x", x);
  if (v.shape() != x.shape() || v.dtype() != x.dtype())
    throw InvalidArgument(fmt::format("hvp: v has shape {} ({}) but x has shape {} ({}); they must match", v.shape(),
                                      dtype_name(v.dtype()), x.shape(), dtype_name(x.dtype())));
  GradModeGuard grad_on(true);
  const FirstGrad fg = first_grad("hvp", f, x);
  // grad(<grad f(x), v>, x) = H^T v = H v (H is symmetric).
  if (!fg.gx.defined() || !fg.gx.requires_grad()) return zeros_like(x);
  const Tensor hv = grad({fg.gx}, {fg.x}, {v.detach()}, GradOptions{.allow_unused = true}).at(0);
  return hv.defined() ? hv : zeros_like(x);
}

// ---- report ----

bool GradcheckReport::ok() const {
  if (inputs.empty()) return false;
  for (const InputCheck& ic : inputs)
    if (ic.checked && !ic.ok) return false;
  return true;
}

std::string GradcheckReport::str() const {
  std::size_t failed = 0;
  for (const InputCheck& ic : inputs)
    if (ic.checked && !ic.ok) ++failed;
  std::string s = fmt::format("{}{}: {} ({}, eps={:g}, atol={:g}, rtol={:g}{})", check, options.fast_mode ? " (fast mode)" : "",
                              ok() ? "ok" : fmt::format("FAILED for {} of {} inputs", failed, inputs.size()),
                              dtype_name(dtype), options.eps, options.atol, options.rtol,
                              options.fast_mode || check == "gradgradcheck" ? fmt::format(", seed={}", options.seed) : "");
  for (const InputCheck& ic : inputs) {
    s += fmt::format("\n  {} {}: ", ic.name, ic.shape);
    if (!ic.checked) {
      s += "not checked (does not require grad)";
      continue;
    }
    s += ic.ok ? "ok" : "FAILED";
    s += fmt::format(" (max abs error {:.3g}, max rel error {:.3g})", ic.max_abs_error, ic.max_rel_error);
    if (options.fast_mode) {
      s += fmt::format("; projection u^T J v: analytic {:.10g} vs numeric {:.10g}", ic.analytic, ic.numeric);
    } else if (ic.worst_element >= 0) {
      const std::string out = outputs.size() > 1 ? fmt::format("output {} {}", ic.worst_output_tensor, fmt_index(ic.worst_output_index))
                                                 : fmt::format("output {}", fmt_index(ic.worst_output_index));
      s += fmt::format("; {} element {} (of {}): analytic {:.10g} vs numeric {:.10g}", ic.ok ? "closest to failing" : "worst",
                       fmt_index(ic.worst_index), out, ic.analytic, ic.numeric);
    }
    if (!ic.ok)
      s += fmt::format(" (|analytic - numeric| = {:.3g} > atol + rtol |numeric| = {:.3g})", std::abs(ic.analytic - ic.numeric),
                       options.atol + options.rtol * std::abs(ic.numeric));
    if (!ic.kinks.empty()) {
      s += fmt::format("\n    {} kink{} (non-differentiable points; the analytic value is a subgradient, not a failure):",
                       ic.kinks.size(), ic.kinks.size() == 1 ? "" : "s");
      constexpr std::size_t kShown = 5;
      for (std::size_t q = 0; q < std::min(ic.kinks.size(), kShown); ++q) {
        const Kink& kk = ic.kinks[q];
        s += fmt::format("\n      element {} (output {}): analytic {:.6g} in [{:.6g}, {:.6g}] (left {:.6g}, right {:.6g})",
                         fmt_index(kk.index), fmt_index(kk.output_index), kk.analytic, std::min(kk.left, kk.right),
                         std::max(kk.left, kk.right), kk.left, kk.right);
      }
      if (ic.kinks.size() > kShown) s += fmt::format("\n      ... and {} more", ic.kinks.size() - kShown);
    }
  }
  for (const std::string& w : warnings) s += fmt::format("\n  warning: {}", w);
  return s;
}

nlohmann::json GradcheckReport::to_json() const {
  nlohmann::json j;
  j["check"] = check;
  j["ok"] = ok();
  j["dtype"] = std::string(dtype_name(dtype));
  j["options"] = {{"eps", number(options.eps)},     {"atol", number(options.atol)},
                  {"rtol", number(options.rtol)},   {"fast_mode", options.fast_mode},
                  {"seed", options.seed},           {"detect_kinks", options.detect_kinks}};
  j["outputs"] = nlohmann::json::array();
  for (const Shape& s : outputs) j["outputs"].push_back(s.to_vector());
  j["inputs"] = nlohmann::json::array();
  for (const InputCheck& ic : inputs) {
    nlohmann::json e;
    e["input"] = ic.input;
    e["name"] = ic.name;
    e["shape"] = ic.shape.to_vector();
    e["checked"] = ic.checked;
    e["ok"] = ic.ok;
    e["max_abs_error"] = number(ic.max_abs_error);
    e["max_rel_error"] = number(ic.max_rel_error);
    e["worst_output"] = ic.worst_output;
    e["worst_output_tensor"] = ic.worst_output_tensor;
    e["worst_output_index"] = ic.worst_output_index;
    e["worst_element"] = ic.worst_element;
    e["worst_index"] = ic.worst_index;
    e["analytic"] = number(ic.analytic);
    e["numeric"] = number(ic.numeric);
    e["kinks"] = nlohmann::json::array();
    for (const Kink& kk : ic.kinks)
      e["kinks"].push_back({{"output", kk.output},
                            {"output_index", kk.output_index},
                            {"element", kk.element},
                            {"index", kk.index},
                            {"left", number(kk.left)},
                            {"right", number(kk.right)},
                            {"analytic", number(kk.analytic)},
                            {"interval", {number(std::min(kk.left, kk.right)), number(std::max(kk.left, kk.right))}}});
    j["inputs"].push_back(std::move(e));
  }
  j["warnings"] = warnings;
  return j;
}

std::ostream& operator<<(std::ostream& os, const GradcheckReport& r) { return os << r.str(); }

}  // namespace tapegrad
