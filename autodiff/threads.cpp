// SPDX-License-Identifier: MIT
#include "autodiff/threads.hpp"

#include <Eigen/Core>
#include <fmt/format.h>

#include "autodiff/error.hpp"

#if TAPEGRAD_HAVE_OPENBLAS
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace tapegrad {
namespace {
int& threads() {
  static int n = [] {
#if TAPEGRAD_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
    Eigen::setNbThreads(1);
    return 1;
  }();
  return n;
}
}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw InvalidArgument(fmt::format("set_num_threads: n = {}; expected n >= 1", n));
#if TAPEGRAD_HAVE_OPENBLAS
  openblas_set_num_threads(n);
#endif
  Eigen::setNbThreads(n);
  threads() = n;
}

int get_num_threads() { return threads(); }

bool using_openblas() {
#if TAPEGRAD_HAVE_OPENBLAS
  return true;
#else
  return false;
#endif
}

}  // namespace tapegrad
