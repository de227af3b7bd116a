// SPDX-License-Identifier: MIT
#include "autodiff/custom_op.hpp"
#include "autodiff/detail/node.hpp"

#include <mutex>
#include <set>

namespace tapegrad {

const char* intern_name(const std::string& name) {
  // std::set never moves its elements, so the c_str() of an entry stays valid for the life of
  // the program. Names are few (one per custom op), so the store only grows a little.
  static std::mutex mutex;
  static std::set<std::string, std::less<>> names;
  const std::lock_guard<std::mutex> lock(mutex);
  return names.insert(name).first->c_str();
}

Tensor custom_op(const std::string& name, const std::vector<Tensor>& inputs, const CustomForward& forward,
                 const CustomVjp& vjp, SourceLocation site) {
  const SiteScope site_scope(site);
  if (!forward) throw InvalidArgument(fmt::format("custom_op '{}': forward is empty (expected a callable)", name));
  if (!vjp) throw InvalidArgument(fmt::format("custom_op '{}': vjp is empty (expected a callable)", name));
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (!inputs[k].defined())
      throw InvalidArgument(fmt::format("custom_op '{}': input {} is an undefined Tensor (expected a tensor with a value)", name, k));

  Tensor value;
  {
    NoGradGuard no_grad;  // the forward's own ops are not recorded: the VJP stands for them
    value = forward(inputs);
  }
  if (!value.defined())
    throw RuntimeError(fmt::format("custom_op '{}': forward returned an undefined Tensor (expected the op's output)", name));
  // Always a fresh handle (sharing the storage): forward may return one of its inputs, or a
  // tensor the caller also holds, and recording marks the handle as produced by this op.
  Tensor out = value.detach();
  // Non-floating outputs (indices, masks) have no gradient: nothing is recorded, as for
  // comparisons.
  if (!is_floating(out.dtype())) return out;

  const char* op = intern_name(name);
  // The user's vjp reads every input and the output, so the node saves them all. Its callable is
  // the one closure that may own memory (whatever it captured); it is counted by its size.
  struct UserVjp {
    const char* op;
    std::shared_ptr<const CustomVjp> vjp;
    Grads operator()(const Tensor& g, const Saved& s) const {
      const std::vector<Tensor> in(&s[1], &s[1] + (s.size() - 1));
      Grads gs = (*vjp)(in, s[0], g);
      if (gs.size() != in.size())
        throw RuntimeError(fmt::format(
            "custom_op '{}': vjp returned {} gradients for {} inputs (expected one per input, in order; an "
            "undefined Tensor stands for zero)",
            op, gs.size(), in.size()));
      return gs;
    }
  };
  if (!detail::should_record(inputs)) return out;
  std::vector<Tensor> saved{out};
  saved.insert(saved.end(), inputs.begin(), inputs.end());
  detail::record_node({op, "custom VJP (the vjp function given to custom_op)"}, inputs, out, saved,
                      Vjp(UserVjp{op, std::make_shared<const CustomVjp>(vjp)}), Vjp(), sizeof(CustomVjp));
  return out;
}

Tensor custom_op(const std::string& name, const Tensor& x, const std::function<Tensor(const Tensor&)>& forward,
                 const std::function<Tensor(const Tensor& x, const Tensor& g)>& vjp, SourceLocation site) {
  const SiteScope site_scope(site);
  if (!forward) throw InvalidArgument(fmt::format("custom_op '{}': forward is empty (expected a callable)", name));
  if (!vjp) throw InvalidArgument(fmt::format("custom_op '{}': vjp is empty (expected a callable)", name));
  return custom_op(
      name, std::vector<Tensor>{x}, [forward](const std::vector<Tensor>& in) { return forward(in[0]); },
      [vjp](const std::vector<Tensor>& in, const Tensor&, const Tensor& g) { return Grads{vjp(in[0], g)}; }, site);
}

}  // namespace tapegrad
