// SPDX-License-Identifier: MIT
#include "autodiff/site.hpp"

#include <string_view>

#include <fmt/format.h>

namespace tapegrad {
namespace {

thread_local std::optional<SourceLocation> t_site;

// Sites inside the library itself (an op calling another op, a layer calling an op) are not the
// user's: skip them so the first call from user code is the one reported.
bool inside_library(const SourceLocation& s) {
#ifdef TAPEGRAD_LIBRARY_DIR
  const std::string_view file = s.file_name();
  const std::string_view root = TAPEGRAD_LIBRARY_DIR;
  if (file.substr(0, root.size()) != root) return false;
  const std::string_view rest = file.substr(root.size());
  return rest.starts_with("/ops/") || rest.starts_with("/nn/") || rest.starts_with("/autodiff/");
#else
  (void)s;
  return false;
#endif
}

// The same call site comes back on every call of a loop: remember the last file checked.
bool inside_library_cached(const SourceLocation& s) {
  thread_local const char* last_file = nullptr;
  thread_local bool last_inside = false;
  if (s.file_name() != last_file) {
    last_file = s.file_name();
    last_inside = inside_library(s);
  }
  return last_inside;
}

}  // namespace

SiteScope::SiteScope(const SourceLocation& site) noexcept : active_(!t_site && !inside_library_cached(site)) {
  if (active_) t_site = site;
}

SiteScope::~SiteScope() {
  if (active_) t_site.reset();
}

std::optional<SourceLocation> current_site() { return t_site; }

std::string format_site(const SourceLocation& s) { return fmt::format("{}:{}", s.file_name(), s.line()); }

namespace detail {
std::string site_suffix() { return t_site ? fmt::format(" (called from {})", format_site(*t_site)) : std::string(); }
}  // namespace detail

}  // namespace tapegrad
