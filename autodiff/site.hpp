// SPDX-License-Identifier: MIT
#pragma once
// Call sites. Every public op takes `SourceLocation site = SourceLocation::current()`
// as its last argument, so the compiler fills in the caller's file and line. The op opens a
// SiteScope: the first site on this thread that is not inside tapegrad's own sources becomes the
// "current site" until that op returns. Errors thrown meanwhile (InvalidArgument, RuntimeError)
// end with "(called from file:line)", and the tape records the site with the node it creates
// (anomaly mode prints it). Operators (a + b) cannot take the extra argument; inside them the
// site is whatever an enclosing call set, or none.
#include <optional>
#include "autodiff/source_location.hpp"
#include <string>

namespace tapegrad {

class SiteScope {
 public:
  explicit SiteScope(const SourceLocation& site) noexcept;
  ~SiteScope();
  SiteScope(const SiteScope&) = delete;
  SiteScope& operator=(const SiteScope&) = delete;

 private:
  bool active_;
};

std::optional<SourceLocation> current_site();
std::string format_site(const SourceLocation& site);  // "file:line"

namespace detail {
std::string site_suffix();  // " (called from file:line)" or "" when no site is set
}

}  // namespace tapegrad
