// SPDX-License-Identifier: MIT
#include "nn/init.hpp"

#include <cmath>

#include <fmt/format.h>

namespace tapegrad::nn::init {
namespace {

void check_float(const char* fn, const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype()))
    throw InvalidArgument(fmt::format("init.{}: tensor must be defined and float32/float64", fn));
}

// Fills t in place from draw(), element by element in row-major order (the order fixes the stream).
template <class F>
Tensor& fill(Tensor& t, F draw) {
  dispatch_float(t.dtype(), [&]<class T>() {
    T* p = t.mutable_data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(draw());
  });
  return t;
}

}  // namespace

std::pair<double, double> fan_in_and_fan_out(const Tensor& t) {
  if (t.dim() < 2)
    throw InvalidArgument(fmt::format("init: fan in and fan out need a tensor of at least 2 dims; got shape {}", t.shape()));
  double receptive = 1;
  for (int d = 2; d < t.dim(); ++d) receptive *= static_cast<double>(t.size(d));
  return {static_cast<double>(t.size(1)) * receptive, static_cast<double>(t.size(0)) * receptive};
}

double calculate_gain(const std::string& nonlinearity, double param) {
  if (nonlinearity == "linear" || nonlinearity == "sigmoid" || nonlinearity == "identity") return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nonlinearity == "selu") return 3.0 / 4.0;
  throw InvalidArgument(fmt::format("init.calculate_gain: unknown nonlinearity '{}' (expected linear, sigmoid, tanh, "
                                    "relu, leaky_relu or selu)", nonlinearity));
}

Tensor& uniform_(Tensor& t, double a, double b, Generator& gen) {
  check_float("uniform_", t);
  if (!(a <= b)) throw InvalidArgument(fmt::format("init.uniform_: a = {} > b = {}; expected a <= b", a, b));
  return fill(t, [&] { return a + (b - a) * gen.uniform(); });
}

Tensor& normal_(Tensor& t, double mean, double std, Generator& gen) {
  check_float("normal_", t);
  if (!(std >= 0)) throw InvalidArgument(fmt::format("init.normal_: std = {}; expected std >= 0", std));
  return fill(t, [&] { return mean + std * gen.normal(); });
}

Tensor& constant_(Tensor& t, double value) {
  check_float("constant_", t);
  return fill(t, [&] { return value; });
}
Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

Tensor& xavier_uniform_(Tensor& t, Generator& gen, double gain) {
  check_float("xavier_uniform_", t);
  const auto [fan_in, fan_out] = fan_in_and_fan_out(t);
  const double r = gain * std::sqrt(6.0 / (fan_in + fan_out));
  return uniform_(t, -r, r, gen);
}

Tensor& xavier_normal_(Tensor& t, Generator& gen, double gain) {
  check_float("xavier_normal_", t);
  const auto [fan_in, fan_out] = fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / (fan_in + fan_out)), gen);
}

namespace {
double kaiming_std(const Tensor& t, double a, FanMode mode, const std::string& nonlinearity) {
  const auto [fan_in, fan_out] = fan_in_and_fan_out(t);
  const double fan = mode == FanMode::FanIn ? fan_in : fan_out;
  if (fan <= 0) throw InvalidArgument(fmt::format("init.kaiming: tensor of shape {} has fan 0", t.shape()));
  return calculate_gain(nonlinearity, a) / std::sqrt(fan);
}
}  // namespace

Tensor& kaiming_uniform_(Tensor& t, Generator& gen, double a, FanMode mode, const std::string& nonlinearity) {
  check_float("kaiming_uniform_", t);
  const double r = std::sqrt(3.0) * kaiming_std(t, a, mode, nonlinearity);
  return uniform_(t, -r, r, gen);
}

Tensor& kaiming_normal_(Tensor& t, Generator& gen, double a, FanMode mode, const std::string& nonlinearity) {
  check_float("kaiming_normal_", t);
  return normal_(t, 0.0, kaiming_std(t, a, mode, nonlinearity), gen);
}

}  // namespace tapegrad::nn::init
