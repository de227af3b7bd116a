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
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: L2 added to the gradient; AdamW: decoupled (default 1e-2 there)
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

// AdamW: pass weight_decay explicitly (PyTorch's AdamW default is 1e-2; AdamOptions' is 0).
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
class StepLR {
 public:
  StepLR(Optimizer& opt, std::int64_t step_size, double gamma = 0.1);  // lr = base * gamma^(epoch / step_size)
  void step();
  std::int64_t epoch() const { return epoch_; }

 private:
  Optimizer& opt_;
  double base_lr_;
  std::int64_t step_size_;
  double gamma_;
  std::int64_t epoch_ = 0;
};

class CosineAnnealingLR {
 public:
  // lr = eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2   (the closed form)
  CosineAnnealingLR(Optimizer& opt, std::int64_t t_max, double eta_min = 0.0);
  void step();
  std::int64_t epoch() const { return epoch_; }

 private:
  Optimizer& opt_;
  double base_lr_;
  std::int64_t t_max_;
  double eta_min_;
  std::int64_t epoch_ = 0;
};

}  // namespace tapegrad::nn
