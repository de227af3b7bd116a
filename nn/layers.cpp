// SPDX-License-Identifier: MIT
#include "nn/layers.hpp"

#include <cmath>

#include <fmt/format.h>

#include "nn/init.hpp"
#include "ops/elementwise.hpp"
#include "ops/linalg.hpp"

namespace tapegrad::nn {

Linear::Linear(std::int64_t in_features, std::int64_t out_features, Generator& gen, bool with_bias, DType dtype)
    : Module("Linear"), in_(in_features), out_(out_features) {
  if (in_features <= 0 || out_features <= 0)
    throw InvalidArgument(fmt::format("Linear: in_features = {}, out_features = {}; expected both > 0", in_features,
                                      out_features));
  if (!is_floating(dtype)) throw InvalidArgument("Linear: dtype must be float32 or float64");
  // PyTorch: kaiming_uniform_(W, a = sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)); bias the same bound.
  Tensor w = Tensor::empty({out_features, in_features}, dtype, "Linear");
  init::kaiming_uniform_(w, gen, std::sqrt(5.0));
  weight = register_parameter("weight", w);
  if (with_bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    Tensor b = Tensor::empty({out_features}, dtype, "Linear");
    init::uniform_(b, -bound, bound, gen);
    bias = register_parameter("bias", b);
  }
}

Tensor Linear::forward(const Tensor& x) {
  if (!x.defined() || x.dim() < 1 || x.size(-1) != in_) {
    const std::string who = weight.name().size() > 7 ? weight.name().substr(0, weight.name().size() - 7) : "";
    throw InvalidArgument(fmt::format("Linear{}({} -> {}): input has shape {}; expected the last dim to be {} "
                                      "(in_features)", who.empty() ? "" : " '" + who + "'", in_, out_,
                                      x.defined() ? fmt::format("{}", x.shape()) : "undefined", in_));
  }
  if (x.dtype() != weight.dtype())
    throw InvalidArgument(fmt::format("Linear({} -> {}): input is {} but the layer is {}; convert one with .to()",
                                      in_, out_, dtype_name(x.dtype()), dtype_name(weight.dtype())));
  return linear(x, weight, bias);
}

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }

GELU::GELU(std::string approximate) : Module("GELU"), approximate_(std::move(approximate)) {
  if (approximate_ != "none" && approximate_ != "tanh")
    throw InvalidArgument(fmt::format("GELU: approximate = '{}'; expected 'none' or 'tanh'", approximate_));
}
Tensor GELU::forward(const Tensor& x) { return gelu(x, approximate_); }

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  if (!(p >= 0.0 && p <= 1.0)) throw InvalidArgument(fmt::format("dropout: p = {}; expected 0 <= p <= 1", p));
  // Checked in eval mode too, so the error does not depend on train()/eval().
  if (!x.defined()) throw InvalidArgument("dropout: x is undefined");
  if (!is_floating(x.dtype()))
    throw InvalidArgument(fmt::format("dropout: x has dtype {}; expected float32 or float64", dtype_name(x.dtype())));
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  // m / (1 - p) with m ~ Bernoulli(1 - p): the expected value of the output is x.
  Tensor mask = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() {
    T* m = mask.mutable_data<T>();
    const T keep = static_cast<T>(1.0 / (1.0 - p));
    for (std::int64_t i = 0; i < mask.numel(); ++i) m[i] = gen.uniform() < p ? T(0) : keep;
  });
  return mul(x, mask);
}

Dropout::Dropout(double p, std::uint64_t seed) : Module("Dropout"), p_(p), gen_(seed) {
  if (!(p >= 0.0 && p <= 1.0)) throw InvalidArgument(fmt::format("Dropout: p = {}; expected 0 <= p <= 1", p));
}
Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training(), gen_); }

Sequential::Sequential(std::vector<std::shared_ptr<Module>> layers) : Module("Sequential") {
  for (auto& l : layers) add(std::move(l));
}

Sequential& Sequential::add(std::shared_ptr<Module> layer) {
  add_child(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& l : layers_) h = l->forward(h);
  return h;
}

Module& Sequential::operator[](std::size_t i) const {
  if (i >= layers_.size())
    throw InvalidArgument(fmt::format("Sequential: index {} is out of range for {} layers", i, layers_.size()));
  return *layers_[i];
}

std::shared_ptr<Module> make_activation(const std::string& name) {
  if (name == "relu") return std::make_shared<ReLU>();
  if (name == "gelu") return std::make_shared<GELU>();
  if (name == "gelu_tanh") return std::make_shared<GELU>("tanh");
  if (name == "tanh") return std::make_shared<Tanh>();
  if (name == "sigmoid") return std::make_shared<Sigmoid>();
  if (name == "identity") return std::make_shared<Identity>();
  throw InvalidArgument(fmt::format("unknown activation '{}' (expected relu, gelu, gelu_tanh, tanh, sigmoid or "
                                    "identity)", name));
}

MLP::MLP(const std::vector<std::int64_t>& sizes, const std::string& activation, Generator& gen, DType dtype,
         double dropout_p) {
  if (sizes.size() < 2)
    throw InvalidArgument(fmt::format("MLP: sizes has {} entries; expected at least 2 (inputs and outputs)",
                                      sizes.size()));
  make_activation(activation);  // validates the name before anything is built
  check_layer_dtype("MLP", dtype);
  if (!(dropout_p >= 0.0 && dropout_p < 1.0))
    throw InvalidArgument(fmt::format("MLP: dropout = {}; expected 0 <= dropout < 1", dropout_p));
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    add(std::make_shared<Linear>(sizes[i], sizes[i + 1], gen, true, dtype));
    if (i + 2 < sizes.size()) {
      add(make_activation(activation));
      if (dropout_p > 0) add(std::make_shared<Dropout>(dropout_p, gen.next_u64()));
    }
  }
}

}  // namespace tapegrad::nn
