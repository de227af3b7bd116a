// SPDX-License-Identifier: MIT
// Catch2 v2 needs one translation unit with the runner; v3 links Catch2WithMain instead.
#if !TAPEGRAD_CATCH_V3
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
