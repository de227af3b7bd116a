// SPDX-License-Identifier: MIT
#pragma once
// Threads used inside one op (matrix products). tapegrad's own loops are single-threaded; the
// GEMMs run on OpenBLAS's threads when built with it (TAPEGRAD_OPENBLAS), else on Eigen's (only
// with OpenMP). The default is 1 thread, so results and timings are reproducible.
namespace tapegrad {

void set_num_threads(int n);  // n >= 1
int get_num_threads();
bool using_openblas();        // matrix products go to OpenBLAS

}  // namespace tapegrad
