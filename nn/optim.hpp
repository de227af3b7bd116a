// SPDX-License-Identifier: MIT
#pragma once
// Optimisers with PyTorch's exact update rules (torch.optim, 1.13, single-tensor path), applied in
// place to the parameters' values outside the tape. Parameters without a grad are skipped, as in
// PyTorch. g = p.grad below; every operation is elementwise.
//
//   SGD     g += wd p;  if momentum: b = g (first step) or b = mu b + (1 - dampening) g;
//           g = nesterov ? g + mu b : b;   p -= lr g
//   Adam    t += 1;  g += wd p;  m = m + (1 - b1)(g - m);  v = b2 v + (1 - b2) g^2
//           (amsgrad: vmax = max(vmax, v), used for v below)
//           p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   AdamW   p *= 1 - lr wd;  then Adam without the wd term (decoupled weight decay)
//
// State (momentum buffers, moments, step counts) saves and loads through state_dict() /
// load_state_dict(), which checkpoints use; loading validates everything before changing anything.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "autodiff/tensor.hpp"
#include "nn/module.hpp"

namespace tapegrad::nn {

class Optimizer {
 public:
  Optimizer(std::string type_name, std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  void zero_grad();  // every parameter's grad -> undefined (set_to_none, PyTorch's default)

  double lr() const { return lr_; }
  void set_lr(double lr);  // >= 0 (schedules may reach 0)
  const std::vector<Tensor>& params() const { return params_; }
  const std::string& type_name() const { return type_name_; }

  // {"type": ..., "lr": ..., hyper-parameters..., "state": [per parameter {...}]}: tensors as
  // {"shape", "dtype", "values"} with exact round trip.
  virtual nlohmann::json state_dict() const = 0;
  // Throws (and changes nothing) unless the state matches this optimiser's type and parameters.
  virtual void load_state_dict(const nlohmann::json& state) = 0;

  // The same state with its tensors kept out of the JSON, for binary checkpoints
  // (nn/safetensors.hpp): each state tensor is appended to `tensors` and stands in the JSON as
  // {"tensor": <its index>}. Loading takes them back from `tensors` (each index at most once) and
  // checks them as load_state_dict checks the JSON form. No per-element JSON either way.
  nlohmann::json state_dict_with_tensors(std::vector<Tensor>& tensors) const;
  void load_state_dict_with_tensors(const nlohmann::json& state, const std::vector<Tensor>& tensors);

 protected:
  std::string type_name_;
  std::vector<Tensor> params_;
  double lr_;
};

struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SgdOptions& options);
  void step() override;
  nlohmann::json state_dict() const override;
  void load_state_dict(const nlohmann::json& state) override;
  const SgdOptions& options() const { return options_; }

 private:
  SgdOptions options_;
  std::vector<Tensor> momentum_buffer_;  // undefined until the first step that has a grad
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;  // > 0: the update divides by sqrt(v) + eps, and v starts at 0
  // Adam: L2 added to the gradient; AdamW: decoupled. Unset means PyTorch's default for the
  // optimiser: 0 for Adam, 1e-2 for AdamW. options() reports the value in use.
  std::optional<double> weight_decay = std::nullopt;
  bool amsgrad = false;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, const AdamOptions& options);
  void step() override;
  nlohmann::json state_dict() const override;
  void load_state_dict(const nlohmann::json& state) override;
  const AdamOptions& options() const { return options_; }

 protected:
  Adam(std::string type_name, std::vector<Tensor> params, const AdamOptions& options, bool decoupled);

 private:
  AdamOptions options_;
  bool decoupled_;
  std::vector<std::int64_t> step_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_, max_exp_avg_sq_;
};

// AdamW: weight_decay defaults to 1e-2, as torch.optim.AdamW (pass 0.0 for none).
class AdamW : public Adam {
 public:
  AdamW(std::vector<Tensor> params, const AdamOptions& options);
};

// Scales every gradient by max_norm / (total_norm + 1e-6) when that is below 1, where total_norm
// is the norm_type-norm of all gradients together (PyTorch's clip_grad_norm_). Returns total_norm.
// A non-finite total norm throws when error_if_nonfinite, and leaves the gradients as they were.
double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// Learning-rate schedules; call step() once per epoch, after the optimiser's step (PyTorch order).
// state_dict() holds what PyTorch's holds ("last_epoch", "base_lrs", "_step_count", "_last_lr" and
// the hyper-parameters), so a checkpoint resumes the schedule exactly (nn::save/load take one);
// load_state_dict() validates everything (the checks the constructor makes, one base lr for our
// one parameter group, _step_count = last_epoch + 1) before changing anything, and takes the
// hyper-parameters from the state, as PyTorch's does.
class LRScheduler {
 public:
  LRScheduler(std::string type_name, Optimizer& opt);
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  void step();  // epoch += 1, then the optimiser's lr = lr_at(epoch)
  std::int64_t epoch() const { return epoch_; }  // PyTorch's last_epoch
  double base_lr() const { return base_lr_; }    // the optimiser's lr when the schedule was built
  const std::string& type_name() const { return type_name_; }

  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);
  // Throws CheckpointError if load_state_dict would; changes nothing (nn::load checks every
  // entry of a checkpoint before it changes anything).
  void check_state_dict(const nlohmann::json& state);

 protected:
  virtual double lr_at(std::int64_t epoch) const = 0;
  virtual void hyper_parameters_to(nlohmann::json& j) const = 0;
  // Reads and checks the hyper-parameters from `j` (with the base lr read from it); sets them
  // only when `commit`.
  virtual void hyper_parameters_from(const nlohmann::json& j, double base_lr, bool commit) = 0;

  Optimizer& opt_;
  double base_lr_;

 private:
  void parse(const nlohmann::json& state, bool commit);

  std::string type_name_;
  std::int64_t epoch_ = 0;
  double last_lr_;  // the lr this schedule last set (PyTorch's _last_lr)
};

class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, std::int64_t step_size, double gamma = 0.1);  // lr = base * gamma^(epoch / step_size)

 protected:
  double lr_at(std::int64_t epoch) const override;
  void hyper_parameters_to(nlohmann::json& j) const override;
  void hyper_parameters_from(const nlohmann::json& j, double base_lr, bool commit) override;

 private:
  std::int64_t step_size_;
  double gamma_;
};

class CosineAnnealingLR : public LRScheduler {
 public:
  // lr = eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2   (the closed form)
  CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min = 0.0);

 protected:
  double lr_at(std::int64_t epoch) const override;
  void hyper_parameters_to(nlohmann::json& j) const override;
  void hyper_parameters_from(const nlohmann::json& j, double base_lr, bool commit) override;

 private:
  std::int64_t t_max_;
  double eta_min_;
};

}  // namespace tapegrad::nn
