// SPDX-License-Identifier: MIT
#include "nn/module.hpp"


#include <fmt/format.h>

#include "autodiff/tape.hpp"

namespace tapegrad::nn {

Tensor Module::forward(const Tensor&) {
  throw InvalidArgument(fmt::format("{}: this module does not take a single tensor; call its own forward(...)", type_name_));
}

void Module::check_new_name(const std::string& name) const {
  if (name.empty() || name.find('.') != std::string::npos)
    throw InvalidArgument(fmt::format("{}: name '{}' must be non-empty and contain no '.'", type_name_, name));
  auto taken = [&](const auto& list) {
    for (const auto& [n, v] : list)
      if (n == name) return true;
    return false;
  };
  if (taken(params_) || taken(buffers_) || taken(children_))
    throw InvalidArgument(fmt::format("{}: name '{}' is already registered", type_name_, name));
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name);
  if (!t.defined()) throw InvalidArgument(fmt::format("{}: parameter '{}' is undefined", type_name_, name));
  if (!is_floating(t.dtype()))
    throw InvalidArgument(fmt::format("{}: parameter '{}' has dtype {}; expected float32 or float64", type_name_, name,
                                      dtype_name(t.dtype())));
  if (!t.is_leaf()) t = t.detach();
  if (!t.requires_grad()) t.requires_grad_(true);
  t.set_name(prefix_ + name);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  if (!t.defined()) throw InvalidArgument(fmt::format("{}: buffer '{}' is undefined", type_name_, name));
  t = t.detach();
  t.set_name(prefix_ + name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  if (!m) throw InvalidArgument(fmt::format("{}: submodule '{}' is null", type_name_, name));
  m->set_prefix(prefix_ + name + ".");
  children_.emplace_back(name, std::move(m));
}

void Module::set_prefix(const std::string& prefix) {
  prefix_ = prefix;
  for (auto& [n, t] : params_) t.set_name(prefix + n);
  for (auto& [n, t] : buffers_) t.set_name(prefix + n);
  for (auto& [n, c] : children_) c->set_prefix(prefix + n + ".");
}

void Module::collect(const std::string& prefix, bool params, bool buffers, std::vector<NamedTensor>& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(prefix + n, t);
  for (const auto& [n, c] : children_) c->collect(prefix + n + ".", params, buffers, out);
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", true, false, out);
  return out;
}

std::vector<NamedTensor> Module::named_buffers() const {
  std::vector<NamedTensor> out;
  collect("", false, true, out);
  return out;
}

std::vector<NamedTensor> Module::state() const {
  std::vector<NamedTensor> out;
  collect("", true, true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

void Module::collect_generators(const std::string& prefix, std::vector<std::pair<std::string, Generator*>>& out) {
  if (Generator* g = own_generator()) out.emplace_back(prefix, g);
  for (const auto& [n, c] : children_) c->collect_generators(prefix.empty() ? n : prefix + "." + n, out);
}

std::vector<std::pair<std::string, Generator*>> Module::named_generators() {
  std::vector<std::pair<std::string, Generator*>> out;
  collect_generators("", out);
  return out;
}

std::vector<std::pair<std::string, const Generator*>> Module::named_generators() const {
  // Reading only: the walk itself changes nothing.
  std::vector<std::pair<std::string, const Generator*>> out;
  for (const auto& [n, g] : const_cast<Module*>(this)->named_generators()) out.emplace_back(n, g);
  return out;
}

std::int64_t Module::num_parameters() const {
  std::int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::zero_grad() {
  for (Tensor& p : parameters()) p.zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::to(DType dtype) {
  if (!is_floating(dtype))
    throw InvalidArgument(fmt::format("{}.to: dtype {}; expected float32 or float64", type_name_, dtype_name(dtype)));
  NoGradGuard no_grad;
  for (auto& [n, t] : state())
    if (is_floating(t.dtype()) && t.dtype() != dtype) assign_value(t, t.detach().to(dtype));
}

DType Module::dtype() const {
  for (const auto& [n, t] : state())
    if (is_floating(t.dtype())) return t.dtype();
  return kFloat32;
}

void Module::summary_into(const std::string& prefix, int depth, std::string& out) const {
  std::string shapes;
  for (const auto& [n, t] : params_) shapes += fmt::format(" {}{}", n, t.shape());
  // The count covers the module's children too, so a container line shows its subtree's total.
  out += fmt::format("{:{}}{}{} ({}){}\n", "", 2 * depth, prefix.empty() ? "" : prefix + ": ", type_name_,
                     num_parameters(), shapes);
  for (const auto& [n, c] : children_) c->summary_into(n, depth + 1, out);
}

std::string Module::summary() const {
  std::string out;
  summary_into("", 0, out);
  out += fmt::format("{} trainable parameters\n", num_parameters());
  return out;
}

void assign_value(Tensor& dst, const Tensor& src) {
  if (dst.same(src)) return;
  dst.set_data(src);
  dst.zero_grad();
}

void check_layer_dtype(const char* layer, DType dtype) {
  if (!is_floating(dtype))
    throw InvalidArgument(fmt::format("{}: dtype = {}; expected float32 or float64 (its parameters are trained by "
                                      "gradients)", layer, dtype_name(dtype)));
}

}  // namespace tapegrad::nn
