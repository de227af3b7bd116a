// SPDX-License-Identifier: MIT
#pragma once
// A seeded random generator whose streams are specified bit for bit (not implementation-defined
// like std::normal_distribution): SplitMix64 expands the seed into the state of xoshiro256**
// (Blackman & Vigna). The same seed gives the same numbers on every platform we build on.
//   uniform  double: (x >> 11) * 2^-53 in [0, 1);  float: (x >> 40) * 2^-24 in [0, 1)
//   normal   Box-Muller from two doubles: sqrt(-2 ln(1 - u1)) * cos(2 pi u2), computed in double
#include <array>
#include <cstdint>

namespace tapegrad {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(std::uint64_t seed);

  std::uint64_t next_u64();
  double uniform();         // [0, 1)
  float uniform_float();    // [0, 1)
  double normal();          // N(0, 1)
  std::uint64_t below(std::uint64_t n);  // uniform integer in [0, n), unbiased (rejection)

  // The whole state (xoshiro256**'s four words), to save and restore a stream exactly
  // (torch.Generator.get_state / set_state). set_state rejects the all-zero state, which
  // xoshiro256** never leaves.
  using State = std::array<std::uint64_t, 4>;
  State state() const { return s_; }
  void set_state(const State& s);

 private:
  std::array<std::uint64_t, 4> s_{};
};

}  // namespace tapegrad
