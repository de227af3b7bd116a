// SPDX-License-Identifier: MIT
#include "nn/optim.hpp"

#include <cmath>
#include <limits>
#include <numbers>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "autodiff/eigen.hpp"
#include "nn/serialize.hpp"

namespace tapegrad::nn {
namespace {

// The checks the constructors make (throwing InvalidArgument), shared with load_state_dict
// (throwing CheckpointError, `who` = "Adam state"), so a checkpoint cannot install options the
// constructor would have refused.
template <class E = InvalidArgument>
void check_lr(const std::string& who, double lr) {
  if (!(lr > 0) || !std::isfinite(lr)) throw E(fmt::format("{}: lr = {}; expected a finite lr > 0", who, lr));
}

void check_lr_state(const std::string& who, double lr) {
  // >= 0, not > 0: a schedule may have brought the lr to 0 (cosine annealing to eta_min = 0)
  // when the checkpoint was written.
  if (!(lr >= 0) || !std::isfinite(lr))
    throw CheckpointError(fmt::format("{} state: lr = {}; expected a finite lr >= 0", who, lr));
}

template <class E = InvalidArgument>
void check_nonneg(const std::string& who, const char* name, double v) {
  if (!(v >= 0) || !std::isfinite(v)) throw E(fmt::format("{}: {} = {}; expected a finite value >= 0", who, name, v));
}

template <class E = InvalidArgument>
void check_beta(const std::string& who, const char* name, double b) {
  if (!(b >= 0.0 && b < 1.0)) throw E(fmt::format("{}: {} = {}; expected 0 <= {} < 1", who, name, b, name));
}

template <class E = InvalidArgument>
void check_sgd_options(const std::string& who, const SgdOptions& o) {
  check_nonneg<E>(who, "momentum", o.momentum);
  check_nonneg<E>(who, "dampening", o.dampening);
  check_nonneg<E>(who, "weight_decay", o.weight_decay);
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    throw E(fmt::format("{}: nesterov needs momentum > 0 and dampening = 0 (as in PyTorch); got momentum = {}, "
                        "dampening = {}", who, o.momentum, o.dampening));
}

// eps > 0: with eps = 0 a weight whose gradient has been 0 so far divides 0 by 0.
template <class E = InvalidArgument>
void check_adam_options(const std::string& who, const AdamOptions& o) {
  check_beta<E>(who, "beta1", o.beta1);
  check_beta<E>(who, "beta2", o.beta2);
  if (!(o.eps > 0) || !std::isfinite(o.eps))
    throw E(fmt::format("{}: eps = {}; expected a finite eps > 0 (the update divides by sqrt(v) + eps)", who, o.eps));
  check_nonneg<E>(who, "weight_decay", o.weight_decay.value_or(0.0));
}

// Every value finite (and >= 0 for second moments, which are means of squares): a NaN or an
// infinity in an optimiser's state would spread into the weights at the next step.
void check_state_values(const Tensor& t, const std::string& key, bool nonneg) {
  if (!t.defined()) return;
  dispatch_float(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(p[i]) || (nonneg && p[i] < 0))
        throw CheckpointError(fmt::format("'{}': value {} = {}; expected finite values{}", key, i,
                                          static_cast<double>(p[i]), nonneg ? " >= 0 (a second moment)" : ""));
  });
}

// While Optimizer::state_dict_with_tensors / load_state_dict_with_tensors run on this thread,
// state tensors go to `out` (saving) or come from `in` (loading) instead of through JSON values.
struct TensorSlots {
  std::vector<Tensor>* out = nullptr;
  const std::vector<Tensor>* in = nullptr;
  std::vector<bool> used;
};
thread_local TensorSlots* tensor_slots = nullptr;

class TensorSlotsScope {
 public:
  explicit TensorSlotsScope(TensorSlots& slots) : previous_(tensor_slots) { tensor_slots = &slots; }
  ~TensorSlotsScope() { tensor_slots = previous_; }
  TensorSlotsScope(const TensorSlotsScope&) = delete;
  TensorSlotsScope& operator=(const TensorSlotsScope&) = delete;

 private:
  TensorSlots* previous_;
};

// State tensors are stored per parameter index; an undefined one (no step yet) is null.
nlohmann::json maybe_tensor(const Tensor& t) {
  if (!t.defined()) return nlohmann::json(nullptr);
  if (tensor_slots && tensor_slots->out) {
    tensor_slots->out->push_back(t);
    return {{"tensor", tensor_slots->out->size() - 1}};
  }
  return tensor_to_json(t);
}

Tensor slot_tensor(const nlohmann::json& j, const std::string& key) {
  TensorSlots& s = *tensor_slots;
  const bool ok = j.is_object() && j.size() == 1 && j.contains("tensor") && j["tensor"].is_number_unsigned() &&
                  j["tensor"].get<std::uint64_t>() < s.in->size();
  if (!ok)
    throw CheckpointError(fmt::format("'{}': expected {{\"tensor\": <index below {}>}}, got {}", key, s.in->size(), j.dump()));
  const auto index = static_cast<std::size_t>(j["tensor"].get<std::uint64_t>());
  if (s.used[index]) throw CheckpointError(fmt::format("'{}': tensor {} is already used by another entry", key, index));
  s.used[index] = true;
  const Tensor& t = (*s.in)[index];
  if (!t.defined()) throw CheckpointError(fmt::format("'{}': tensor {} is undefined", key, index));
  return t;
}

Tensor maybe_tensor_from(const nlohmann::json& j, const std::string& key, const Tensor& param, bool nonneg = false) {
  if (j.is_null()) return Tensor();
  Tensor t = tensor_slots && tensor_slots->in ? slot_tensor(j, key) : tensor_from_json(j, key);
  if (t.shape() != param.shape() || t.dtype() != param.dtype())
    throw CheckpointError(fmt::format("'{}': {} {} does not match its parameter {} {}", key, dtype_name(t.dtype()),
                                      t.shape(), dtype_name(param.dtype()), param.shape()));
  check_state_values(t, key, nonneg);
  return t;
}

const nlohmann::json& field(const nlohmann::json& j, const std::string& who, const char* name) {
  if (!j.is_object() || !j.contains(name))
    throw CheckpointError(fmt::format("{} state: missing field '{}'", who, name));
  return j.at(name);
}

double number_field(const nlohmann::json& j, const std::string& who, const char* name) {
  const auto& v = field(j, who, name);
  if (!v.is_number()) throw CheckpointError(fmt::format("{} state: '{}' is {}; expected a number", who, name, v.dump()));
  return v.get<double>();
}

// Checks the common header: type, number of parameters, their shapes.
const nlohmann::json& check_header(const nlohmann::json& j, const std::string& type, const std::vector<Tensor>& params) {
  const auto& t = field(j, type, "type");
  if (!t.is_string() || t.get<std::string>() != type)
    throw CheckpointError(fmt::format("optimizer state is for {}, not {}; load it into an optimizer of type {}",
                                      t.is_string() ? t.get<std::string>() : t.dump(), type,
                                      t.is_string() ? t.get<std::string>() : "matching optimizer"));
  const auto& state = field(j, type, "state");
  if (!state.is_array() || state.size() != params.size())
    throw CheckpointError(fmt::format("{} state: has {} parameter entries; this optimizer has {} parameters", type,
                                      state.is_array() ? state.size() : 0, params.size()));
  return state;
}

}  // namespace

Optimizer::Optimizer(std::string type_name, std::vector<Tensor> params, double lr)
    : type_name_(std::move(type_name)), params_(std::move(params)), lr_(lr) {
  check_lr(type_name_, lr);
  if (params_.empty()) throw InvalidArgument(fmt::format("{}: got an empty parameter list", type_name_));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (!p.defined() || !is_floating(p.dtype()) || !p.is_leaf() || !p.requires_grad())
      throw InvalidArgument(fmt::format("{}: parameter {} ('{}') must be a floating leaf tensor that requires grad",
                                        type_name_, i, p.defined() ? p.name() : "undefined"));
    for (std::size_t k = 0; k < i; ++k)
      if (params_[k].same(p))
        throw InvalidArgument(fmt::format("{}: parameter {} appears twice (also at {})", type_name_, i, k));
  }
}

nlohmann::json Optimizer::state_dict_with_tensors(std::vector<Tensor>& tensors) const {
  TensorSlots slots{.out = &tensors, .in = nullptr, .used = {}};
  const TensorSlotsScope scope(slots);
  return state_dict();
}

void Optimizer::load_state_dict_with_tensors(const nlohmann::json& state, const std::vector<Tensor>& tensors) {
  TensorSlots slots{.out = nullptr, .in = &tensors, .used = std::vector<bool>(tensors.size(), false)};
  const TensorSlotsScope scope(slots);
  load_state_dict(state);
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

void Optimizer::set_lr(double lr) {
  // Schedules may reach 0 (cosine annealing to eta_min = 0); construction requires lr > 0.
  if (!(lr >= 0) || !std::isfinite(lr))
    throw InvalidArgument(fmt::format("{}: lr = {}; expected a finite lr >= 0", type_name_, lr));
  lr_ = lr;
}

// ---------------------------------------------------------------- SGD
SGD::SGD(std::vector<Tensor> params, const SgdOptions& o) : Optimizer("SGD", std::move(params), o.lr), options_(o) {
  check_sgd_options("SGD", o);
  momentum_buffer_.resize(params_.size());
}

void SGD::step() {
  const double mu = options_.momentum, damp = options_.dampening, wd = options_.weight_decay;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    const bool first = !momentum_buffer_[i].defined();
    if (mu != 0 && first) momentum_buffer_[i] = Tensor::empty(p.shape(), p.dtype());
    dispatch_float(p.dtype(), [&]<class T>() {
      // Whole-array expressions (vectorised); d = g + wd p is formed from the old p.
      auto P = p.mutable_array<T>();
      const auto G = g.array<T>();
      const T lr = static_cast<T>(lr_), tw = static_cast<T>(wd), tm = static_cast<T>(mu),
              one_minus_damp = static_cast<T>(1 - damp);
      if (mu == 0) {
        if (wd == 0) P -= lr * G;
        else P -= lr * (G + tw * P);
        return;
      }
      auto Buf = momentum_buffer_[i].mutable_array<T>();
      if (wd == 0) {
        if (first) Buf = G;
        else Buf = Buf * tm + one_minus_damp * G;
        if (options_.nesterov) P -= lr * (G + tm * Buf);
        else P -= lr * Buf;
      } else {
        if (first) Buf = G + tw * P;
        else Buf = Buf * tm + one_minus_damp * (G + tw * P);
        if (options_.nesterov) P -= lr * ((G + tw * P) + tm * Buf);
        else P -= lr * Buf;
      }
    });
  }
}

nlohmann::json SGD::state_dict() const {
  nlohmann::json j;
  j["type"] = "SGD";
  j["lr"] = lr_;
  j["momentum"] = options_.momentum;
  j["dampening"] = options_.dampening;
  j["weight_decay"] = options_.weight_decay;
  j["nesterov"] = options_.nesterov;
  j["state"] = nlohmann::json::array();
  for (const Tensor& b : momentum_buffer_) j["state"].push_back({{"momentum_buffer", maybe_tensor(b)}});
  return j;
}

void SGD::load_state_dict(const nlohmann::json& j) {
  const auto& state = check_header(j, "SGD", params_);
  const double lr = number_field(j, "SGD", "lr");
  check_lr_state("SGD", lr);
  SgdOptions o = options_;
  o.lr = lr;
  o.momentum = number_field(j, "SGD", "momentum");
  o.dampening = number_field(j, "SGD", "dampening");
  o.weight_decay = number_field(j, "SGD", "weight_decay");
  const auto& nesterov = field(j, "SGD", "nesterov");
  if (!nesterov.is_boolean()) throw CheckpointError("SGD state: 'nesterov' must be true or false");
  o.nesterov = nesterov.get<bool>();
  check_sgd_options<CheckpointError>("SGD state", o);
  std::vector<Tensor> buffers;
  for (std::size_t i = 0; i < params_.size(); ++i)
    buffers.push_back(maybe_tensor_from(field(state[i], "SGD", "momentum_buffer"),
                                        fmt::format("state[{}].momentum_buffer", i), params_[i]));
  // Everything parsed and checked: commit.
  options_ = o;
  lr_ = lr;
  momentum_buffer_ = std::move(buffers);
}

// ---------------------------------------------------------------- Adam, AdamW
Adam::Adam(std::vector<Tensor> params, const AdamOptions& o) : Adam("Adam", std::move(params), o, false) {}

Adam::Adam(std::string type_name, std::vector<Tensor> params, const AdamOptions& o, bool decoupled)
    : Optimizer(std::move(type_name), std::move(params), o.lr), options_(o), decoupled_(decoupled) {
  check_adam_options(type_name_, o);
  // PyTorch's defaults: Adam 0, AdamW 1e-2.
  options_.weight_decay = o.weight_decay.value_or(decoupled ? 1e-2 : 0.0);
  step_.assign(params_.size(), 0);
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
  max_exp_avg_sq_.resize(params_.size());
}

AdamW::AdamW(std::vector<Tensor> params, const AdamOptions& o) : Adam("AdamW", std::move(params), o, true) {}

void Adam::step() {
  const double b1 = options_.beta1, b2 = options_.beta2, eps = options_.eps, wd = *options_.weight_decay;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = zeros(p.shape(), p.dtype());
      exp_avg_sq_[i] = zeros(p.shape(), p.dtype());
      if (options_.amsgrad) max_exp_avg_sq_[i] = zeros(p.shape(), p.dtype());
    }
    const std::int64_t t = ++step_[i];
    // Scalars in double, as PyTorch computes them in Python.
    const double bias_correction1 = 1 - std::pow(b1, static_cast<double>(t));
    const double bias_correction2 = 1 - std::pow(b2, static_cast<double>(t));
    const double step_size = lr_ / bias_correction1;
    const double bias_correction2_sqrt = std::sqrt(bias_correction2);
    dispatch_float(p.dtype(), [&]<class T>() {
      T* pp = p.mutable_data<T>();
      const T* pg = g.data<T>();
      T* m = exp_avg_[i].mutable_data<T>();
      T* v = exp_avg_sq_[i].mutable_data<T>();
      T* vmax = options_.amsgrad ? max_exp_avg_sq_[i].mutable_data<T>() : nullptr;
      const T tb1 = static_cast<T>(b1), tb2 = static_cast<T>(b2), one_b1 = static_cast<T>(1 - b1),
              one_b2 = static_cast<T>(1 - b2), tw = static_cast<T>(wd), teps = static_cast<T>(eps),
              decay = static_cast<T>(1 - lr_ * wd), bc2 = static_cast<T>(bias_correction2_sqrt),
              neg_step = static_cast<T>(-step_size);
      const std::int64_t n = p.numel();
      for (std::int64_t k = 0; k < n; ++k) {
        T grad = pg[k];
        if (wd != 0) {
          if (decoupled_) pp[k] = pp[k] * decay;   // AdamW: p *= 1 - lr wd
          else grad = grad + tw * pp[k];           // Adam: L2 in the gradient
        }
        m[k] = m[k] * tb1 + one_b1 * grad;
        v[k] = v[k] * tb2 + one_b2 * (grad * grad);
        T second = v[k];
        if (vmax) {
          vmax[k] = std::max(vmax[k], v[k]);
          second = vmax[k];
        }
        const T denom = std::sqrt(second) / bc2 + teps;
        pp[k] = pp[k] + neg_step * (m[k] / denom);
      }
    });
  }
}

nlohmann::json Adam::state_dict() const {
  nlohmann::json j;
  j["type"] = type_name_;
  j["lr"] = lr_;
  j["beta1"] = options_.beta1;
  j["beta2"] = options_.beta2;
  j["eps"] = options_.eps;
  j["weight_decay"] = *options_.weight_decay;
  j["amsgrad"] = options_.amsgrad;
  j["state"] = nlohmann::json::array();
  for (std::size_t i = 0; i < params_.size(); ++i)
    j["state"].push_back({{"step", step_[i]},
                          {"exp_avg", maybe_tensor(exp_avg_[i])},
                          {"exp_avg_sq", maybe_tensor(exp_avg_sq_[i])},
                          {"max_exp_avg_sq", maybe_tensor(max_exp_avg_sq_[i])}});
  return j;
}

void Adam::load_state_dict(const nlohmann::json& j) {
  const std::string& who = type_name_;
  const auto& state = check_header(j, who, params_);
  AdamOptions o = options_;
  o.lr = number_field(j, who, "lr");
  check_lr_state(who, o.lr);
  o.beta1 = number_field(j, who, "beta1");
  o.beta2 = number_field(j, who, "beta2");
  o.eps = number_field(j, who, "eps");
  o.weight_decay = number_field(j, who, "weight_decay");
  const auto& ams = field(j, who, "amsgrad");
  if (!ams.is_boolean()) throw CheckpointError(fmt::format("{} state: 'amsgrad' must be true or false", who));
  o.amsgrad = ams.get<bool>();
  check_adam_options<CheckpointError>(who + " state", o);
  std::vector<std::int64_t> steps;
  std::vector<Tensor> m, v, vmax;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& s = state[i];
    const auto& st = field(s, who, "step");
    if (!st.is_number_integer() || st.get<std::int64_t>() < 0)
      throw CheckpointError(fmt::format("{} state[{}].step is {}; expected an integer >= 0", who, i, st.dump()));
    steps.push_back(st.get<std::int64_t>());
    m.push_back(maybe_tensor_from(field(s, who, "exp_avg"), fmt::format("state[{}].exp_avg", i), params_[i]));
    v.push_back(
        maybe_tensor_from(field(s, who, "exp_avg_sq"), fmt::format("state[{}].exp_avg_sq", i), params_[i], true));
    vmax.push_back(maybe_tensor_from(field(s, who, "max_exp_avg_sq"), fmt::format("state[{}].max_exp_avg_sq", i),
                                     params_[i], true));
    if (m.back().defined() != v.back().defined() || (o.amsgrad && m.back().defined() && !vmax.back().defined()))
      throw CheckpointError(fmt::format("{} state[{}]: moments are incomplete", who, i));
    // A step creates the moments and counts itself: step = 0 with moments would divide by the
    // bias correction 1 - beta^0 = 0.
    if ((steps.back() > 0) != m.back().defined())
      throw CheckpointError(fmt::format("{} state[{}]: step = {} {} moments; expected step >= 1 with moments and step "
                                        "= 0 without", who, i, steps.back(), m.back().defined() ? "with" : "without"));
  }
  options_ = o;
  lr_ = o.lr;
  step_ = std::move(steps);
  exp_avg_ = std::move(m);
  exp_avg_sq_ = std::move(v);
  max_exp_avg_sq_ = std::move(vmax);
}

// ---------------------------------------------------------------- clipping
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  if (!(max_norm >= 0)) throw InvalidArgument(fmt::format("clip_grad_norm_: max_norm = {}; expected >= 0", max_norm));
  if (!(norm_type > 0)) throw InvalidArgument(fmt::format("clip_grad_norm_: norm_type = {}; expected > 0 (or inf)", norm_type));
  const bool inf_norm = std::isinf(norm_type);
  double acc = 0;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    dispatch_float(g.dtype(), [&]<class T>() {
      // Each tensor's norm in its own dtype, then the norm of the norms (PyTorch's order).
      const auto a = g.array<T>();
      double n;
      if (inf_norm) n = a.size() ? static_cast<double>(a.abs().maxCoeff()) : 0.0;
      else if (norm_type == 2.0) n = static_cast<double>(a.matrix().norm());
      else n = std::pow(static_cast<double>(a.abs().pow(static_cast<T>(norm_type)).sum()), 1.0 / norm_type);
      if (inf_norm) acc = std::max(acc, n);
      else acc += std::pow(n, norm_type);
    });
  }
  const double total = inf_norm ? acc : std::pow(acc, 1.0 / norm_type);
  if (!std::isfinite(total)) {
    if (error_if_nonfinite)
      throw RuntimeError(fmt::format("clip_grad_norm_: the total norm of the gradients is {}; gradients left unchanged",
                                     total));
    return total;
  }
  const double coef = std::min(max_norm / (total + 1e-6), 1.0);
  if (coef < 1.0)
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      dispatch_float(g.dtype(), [&]<class T>() { g.mutable_array<T>() *= static_cast<T>(coef); });
    }
  return total;
}

// ---------------------------------------------------------------- schedules
LRScheduler::LRScheduler(std::string type_name, Optimizer& opt)
    : opt_(opt), base_lr_(opt.lr()), type_name_(std::move(type_name)), last_lr_(opt.lr()) {}

void LRScheduler::step() {
  ++epoch_;
  last_lr_ = lr_at(epoch_);
  opt_.set_lr(last_lr_);
}

nlohmann::json LRScheduler::state_dict() const {
  // PyTorch's names; _step_count counts the step() calls including the constructor's.
  nlohmann::json j;
  j["type"] = type_name_;
  j["last_epoch"] = epoch_;
  j["_step_count"] = epoch_ + 1;
  j["base_lrs"] = nlohmann::json::array({base_lr_});
  j["_last_lr"] = nlohmann::json::array({last_lr_});
  hyper_parameters_to(j);
  return j;
}

void LRScheduler::check_state_dict(const nlohmann::json& state) { parse(state, false); }

void LRScheduler::load_state_dict(const nlohmann::json& state) { parse(state, true); }

void LRScheduler::parse(const nlohmann::json& j, bool commit) {
  const std::string who = type_name_ + " state";
  const auto& t = field(j, type_name_, "type");
  if (!t.is_string() || t.get<std::string>() != type_name_)
    throw CheckpointError(fmt::format("scheduler state is for {}, not {}", t.is_string() ? t.get<std::string>() : t.dump(),
                                      type_name_));
  const auto& e = field(j, type_name_, "last_epoch");
  if (!e.is_number_integer() || e.get<std::int64_t>() < 0)
    throw CheckpointError(fmt::format("{}: 'last_epoch' is {}; expected an integer >= 0", who, e.dump()));
  const std::int64_t epoch = e.get<std::int64_t>();
  const auto& sc = field(j, type_name_, "_step_count");
  if (!sc.is_number_integer() || epoch == std::numeric_limits<std::int64_t>::max() || sc.get<std::int64_t>() != epoch + 1)
    throw CheckpointError(fmt::format("{}: '_step_count' is {}; expected last_epoch + 1 = {}", who, sc.dump(), epoch + 1));
  const auto& b = field(j, type_name_, "base_lrs");
  if (!b.is_array() || b.size() != 1 || !b[0].is_number())
    throw CheckpointError(fmt::format("{}: 'base_lrs' is {}; expected one number (one parameter group)", who, b.dump()));
  const double base_lr = b[0].get<double>();
  check_lr<CheckpointError>(who + ": base_lrs[0]", base_lr);
  const auto& l = field(j, type_name_, "_last_lr");
  if (!l.is_array() || l.size() != 1 || !l[0].is_number() || !(l[0].get<double>() >= 0) || !std::isfinite(l[0].get<double>()))
    throw CheckpointError(fmt::format("{}: '_last_lr' is {}; expected one finite number >= 0", who, l.dump()));
  hyper_parameters_from(j, base_lr, commit);
  if (commit) {
    epoch_ = epoch;
    base_lr_ = base_lr;
    last_lr_ = l[0].get<double>();
  }
}

StepLR::StepLR(Optimizer& opt, std::int64_t step_size, double gamma)
    : LRScheduler("StepLR", opt), step_size_(step_size), gamma_(gamma) {
  if (step_size <= 0) throw InvalidArgument(fmt::format("StepLR: step_size = {}; expected > 0", step_size));
  if (!(gamma > 0) || !std::isfinite(gamma)) throw InvalidArgument(fmt::format("StepLR: gamma = {}; expected a finite gamma > 0", gamma));
}

double StepLR::lr_at(std::int64_t epoch) const {
  return base_lr_ * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

void StepLR::hyper_parameters_to(nlohmann::json& j) const {
  j["step_size"] = step_size_;
  j["gamma"] = gamma_;
}

void StepLR::hyper_parameters_from(const nlohmann::json& j, double, bool commit) {
  const auto& s = field(j, "StepLR", "step_size");
  if (!s.is_number_integer() || s.get<std::int64_t>() <= 0)
    throw CheckpointError(fmt::format("StepLR state: 'step_size' is {}; expected an integer > 0", s.dump()));
  const double gamma = number_field(j, "StepLR", "gamma");
  if (!(gamma > 0) || !std::isfinite(gamma))
    throw CheckpointError(fmt::format("StepLR state: gamma = {}; expected a finite gamma > 0", gamma));
  if (commit) {
    step_size_ = s.get<std::int64_t>();
    gamma_ = gamma;
  }
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min)
    : LRScheduler("CosineAnnealingLR", opt), t_max_(t_max), eta_min_(eta_min) {
  if (t_max <= 0) throw InvalidArgument(fmt::format("CosineAnnealingLR: T_max = {}; expected > 0", t_max));
  if (!(eta_min >= 0 && eta_min < base_lr_))
    throw InvalidArgument(fmt::format("CosineAnnealingLR: eta_min = {}; expected 0 <= eta_min < lr = {}", eta_min, base_lr_));
}

double CosineAnnealingLR::lr_at(std::int64_t epoch) const {
  const double t = static_cast<double>(epoch);  // PyTorch's closed form: it rises again after T_max
  return eta_min_ + (base_lr_ - eta_min_) * (1 + std::cos(std::numbers::pi * t / static_cast<double>(t_max_))) / 2;
}

void CosineAnnealingLR::hyper_parameters_to(nlohmann::json& j) const {
  j["T_max"] = t_max_;
  j["eta_min"] = eta_min_;
}

void CosineAnnealingLR::hyper_parameters_from(const nlohmann::json& j, double base_lr, bool commit) {
  const auto& t = field(j, "CosineAnnealingLR", "T_max");
  if (!t.is_number_integer() || t.get<std::int64_t>() <= 0)
    throw CheckpointError(fmt::format("CosineAnnealingLR state: 'T_max' is {}; expected an integer > 0", t.dump()));
  const double eta_min = number_field(j, "CosineAnnealingLR", "eta_min");
  if (!(eta_min >= 0 && eta_min < base_lr))
    throw CheckpointError(fmt::format("CosineAnnealingLR state: eta_min = {}; expected 0 <= eta_min < base_lrs[0] = {}",
                                      eta_min, base_lr));
  if (commit) {
    t_max_ = t.get<std::int64_t>();
    eta_min_ = eta_min;
  }
}

}  // namespace tapegrad::nn
