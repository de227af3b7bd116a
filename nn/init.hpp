// SPDX-License-Identifier: MIT
#pragma once
// Initialisers, in place, PyTorch's names and formulas (torch.nn.init). Each takes an explicit
// Generator, so a run is reproducible from its seed. fan_in = size(1) * receptive field,
// fan_out = size(0) * receptive field (receptive field = product of dims after the first two), as
// PyTorch computes them for a weight of layout [out, in, ...].
//
//   uniform_(t, a, b)             U(a, b)
//   normal_(t, mean, std)         N(mean, std^2)
//   xavier_uniform_(t, gain)      U(-r, r),  r = gain sqrt(6 / (fan_in + fan_out))
//   xavier_normal_(t, gain)       N(0, s^2), s = gain sqrt(2 / (fan_in + fan_out))
//   kaiming_uniform_(t, a, ...)   U(-r, r),  r = gain sqrt(3 / fan),  gain = calculate_gain(nonlinearity, a)
//   kaiming_normal_(t, a, ...)    N(0, s^2), s = gain / sqrt(fan)
#include <string>
#include <utility>

#include "autodiff/generator.hpp"
#include "autodiff/tensor.hpp"

namespace tapegrad::nn::init {

enum class FanMode { FanIn, FanOut };

std::pair<double, double> fan_in_and_fan_out(const Tensor& t);  // needs rank >= 2
// "linear", "sigmoid", "tanh" (5/3), "relu" (sqrt 2), "leaky_relu" (sqrt(2 / (1 + a^2))), "selu" (3/4)
double calculate_gain(const std::string& nonlinearity, double param = 0.01);

Tensor& uniform_(Tensor& t, double a, double b, Generator& gen);
Tensor& normal_(Tensor& t, double mean, double std, Generator& gen);
Tensor& constant_(Tensor& t, double value);
Tensor& zeros_(Tensor& t);
Tensor& ones_(Tensor& t);
Tensor& xavier_uniform_(Tensor& t, Generator& gen, double gain = 1.0);
Tensor& xavier_normal_(Tensor& t, Generator& gen, double gain = 1.0);
Tensor& kaiming_uniform_(Tensor& t, Generator& gen, double a = 0.0, FanMode mode = FanMode::FanIn,
                         const std::string& nonlinearity = "leaky_relu");
Tensor& kaiming_normal_(Tensor& t, Generator& gen, double a = 0.0, FanMode mode = FanMode::FanIn,
                        const std::string& nonlinearity = "leaky_relu");

}  // namespace tapegrad::nn::init
