// SPDX-License-Identifier: MIT
#pragma once
// Module: a unit of a network that owns parameters (leaf tensors with requires_grad), buffers
// (state that is saved but not trained) and submodules, each under a name. Names are hierarchical
// as in PyTorch's state_dict: a Linear registered as "fc1" inside a module registered as "encoder"
// owns "encoder.fc1.weight" and "encoder.fc1.bias"; a Sequential names its children "0", "1", ...
//
// A parameter's tensor also carries its full name (Tensor::name()), so graphs and error messages
// can say "fc1.weight" rather than "a leaf".
//
// Modules are held by std::shared_ptr when they are children (Sequential, a model's layers), and
// may live on the stack when they are the root. They are movable, not copyable: a parameter is one
// tensor, shared between the module and whatever optimiser holds it.
#include <memory>
#include "autodiff/source_location.hpp"
#include <string>
#include <utility>
#include <vector>

#include "autodiff/generator.hpp"
#include "autodiff/site.hpp"
#include "autodiff/tensor.hpp"

namespace tapegrad::nn {

using NamedTensor = std::pair<std::string, Tensor>;

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The single-tensor forward; modules with other inputs (attention) add their own overloads and
  // leave this one throwing.
  virtual Tensor forward(const Tensor& x);
  // Calls forward; errors inside name the caller's file and line (autodiff/site.hpp).
  Tensor operator()(const Tensor& x, SourceLocation site = SourceLocation::current()) {
    const SiteScope site_scope(site);
    return forward(x);
  }

  // Parameters and buffers, this module's own first, then each child's in registration order.
  std::vector<Tensor> parameters() const;
  std::vector<NamedTensor> named_parameters() const;
  std::vector<NamedTensor> named_buffers() const;
  // Parameters and buffers together, keyed by full name: what a checkpoint stores.
  std::vector<NamedTensor> state() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  std::int64_t num_parameters() const;  // total number of trainable scalars
  // Random streams owned by this module and its children (Dropout's), keyed by the owning
  // module's full name ("2", "block.dropout1"; "" for the root itself). Checkpoints save and
  // restore them, so a resumed run draws the same dropout masks as an uninterrupted one.
  std::vector<std::pair<std::string, Generator*>> named_generators();
  std::vector<std::pair<std::string, const Generator*>> named_generators() const;

  void zero_grad();                      // every parameter's grad -> undefined (set_to_none)
  void train(bool on = true);            // recursive; Dropout and friends read is_training()
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Converts every parameter and buffer in place (the same tensors, new values), so optimisers
  // and other holders see the change. Floating tensors only; grads are cleared.
  void to(DType dtype);
  DType dtype() const;                   // of the first floating parameter (float32 if none)

  const std::string& type_name() const { return type_name_; }
  // A one-line-per-module summary: names, types, parameter shapes and counts.
  std::string summary() const;

 protected:
  // A module that draws random numbers in forward returns its generator here.
  virtual Generator* own_generator() { return nullptr; }
  // Registers t (made a leaf requiring grad) as parameter `name`; returns the stored handle.
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  void add_child(const std::string& name, std::shared_ptr<Module> m);

 private:
  void collect(const std::string& prefix, bool params, bool buffers, std::vector<NamedTensor>& out) const;
  void summary_into(const std::string& prefix, int depth, std::string& out) const;
  void collect_generators(const std::string& prefix, std::vector<std::pair<std::string, Generator*>>& out);
  void check_new_name(const std::string& name) const;
  void set_prefix(const std::string& prefix);

  std::string type_name_;
  std::string prefix_;  // this module's place in the tree ("encoder.fc1."), for tensor names
  bool training_ = true;
  std::vector<NamedTensor> params_;
  std::vector<NamedTensor> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Layers whose parameters are trained take float32 or float64: throws, naming `layer` and the
// dtype, so the check can come first in a constructor, before anything is drawn or built.
void check_layer_dtype(const char* layer, DType dtype);

// Replaces the value of `dst` by that of `src` in place (Tensor::set_data, so every handle on dst
// sees it); shape and dtype may change. Grad is cleared. Used by Module::to and checkpoints.
void assign_value(Tensor& dst, const Tensor& src);

}  // namespace tapegrad::nn
