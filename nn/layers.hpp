// SPDX-License-Identifier: MIT
#pragma once
// Layers, with PyTorch's names, parameter layouts and default initialisation.
//
//   Linear(in, out)      y = x W^T + b        W [out, in], b [out]; x [..., in] -> y [..., out]
//                        init: W, b ~ U(-1/sqrt(in), 1/sqrt(in))  (PyTorch's kaiming_uniform(a=sqrt 5))
//   ReLU, GELU, Tanh, Sigmoid, Identity    elementwise, no parameters
//   Dropout(p)           training: y = x * m / (1 - p), m ~ Bernoulli(1 - p) from the layer's own
//                        seeded Generator; eval: y = x
//   Sequential           children "0", "1", ...; forward feeds each output to the next
//   MLP(sizes, act)      Linear(sizes[0], sizes[1]), act, ..., Linear(sizes[n-2], sizes[n-1]):
//                        a Sequential, so its names match torch.nn.Sequential's ("0.weight", "2.weight")
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/generator.hpp"
#include "nn/module.hpp"

namespace tapegrad::nn {

class Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, Generator& gen, bool bias = true,
         DType dtype = kFloat32);
  Tensor forward(const Tensor& x) override;
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  Tensor weight, bias;  // bias undefined when built without one

 private:
  std::int64_t in_, out_;
};

class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override;
};

class GELU : public Module {
 public:
  explicit GELU(std::string approximate = "none");  // "none" (erf) or "tanh", as PyTorch
  Tensor forward(const Tensor& x) override;

 private:
  std::string approximate_;
};

class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override;
};

class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override;
};

class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, std::uint64_t seed = 0);  // 0 <= p < 1... p = 1 zeroes everything
  Tensor forward(const Tensor& x) override;
  double p() const { return p_; }

 protected:
  Generator* own_generator() override { return &gen_; }

 private:
  double p_;
  Generator gen_;
};

// Functional dropout: the same maths, with the caller's generator.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);

class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<Module>> layers);
  // Appends a layer named by its position.
  Sequential& add(std::shared_ptr<Module> layer);
  template <class M>
    requires std::derived_from<std::decay_t<M>, Module>
  Sequential& add(M&& layer) {
    return add(std::shared_ptr<Module>(std::make_shared<std::decay_t<M>>(std::forward<M>(layer))));
  }
  Tensor forward(const Tensor& x) override;
  std::size_t size() const { return layers_.size(); }
  Module& operator[](std::size_t i) const;

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

// An activation by name: "relu", "gelu", "gelu_tanh", "tanh", "sigmoid", "identity".
std::shared_ptr<Module> make_activation(const std::string& name);

// Multi-layer perceptron: sizes = {in, hidden..., out}, the activation between Linear layers (none
// after the last). Dropout p > 0 adds Dropout after every activation.
class MLP : public Sequential {
 public:
  MLP(const std::vector<std::int64_t>& sizes, const std::string& activation, Generator& gen,
      DType dtype = kFloat32, double dropout = 0.0);
};

}  // namespace tapegrad::nn
