// SPDX-License-Identifier: MIT
// The README and docs/ stay true to the tree: the README's first program is the text of
// examples/first_program.cpp (which CTest builds and runs), its test command is the one .ci/run
// runs, and every relative link in README.md and docs/*.md names a file that exists.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "testing.hpp"

namespace {

namespace fs = std::filesystem;

const fs::path kRoot = fs::path(TAPEGRAD_SOURCE_DIR);

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The first line of `text` that starts with `prefix` ("" if none).
std::string first_line_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line;
  return "";
}

// GitHub's anchor for a heading: lower case, spaces become '-', other punctuation is dropped.
std::string anchor_of(const std::string& heading) {
  std::string a;
  for (const unsigned char c : heading) {
    if (c == ' ')
      a += '-';
    else if (std::isalnum(c) || c == '-' || c == '_' || c >= 0x80)
      a += static_cast<char>(std::tolower(c));
  }
  return a;
}

// The anchors of a Markdown page's headings (outside code blocks).
std::vector<std::string> anchors_of(const std::string& text) {
  std::vector<std::string> anchors;
  std::istringstream in(text);
  bool code = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) code = !code;
    if (code || line.empty() || line[0] != '#') continue;
    const auto start = line.find_first_not_of('#');
    if (start == std::string::npos || line[start] != ' ') continue;
    anchors.push_back(anchor_of(line.substr(start + 1)));
  }
  return anchors;
}

}  // namespace

TEST_CASE("docs: the README's first program is examples/first_program.cpp, verbatim", "[docs]") {
  const std::string readme = slurp(kRoot / "README.md");
  std::string program = slurp(kRoot / "examples" / "first_program.cpp");
  REQUIRE_FALSE(program.empty());
  const std::string spdx = "// SPDX-License-Identifier: MIT\n";
  if (program.rfind(spdx, 0) == 0) program.erase(0, spdx.size());  // the licence line is not shown
  INFO("README.md must contain, in a ```cpp block, the text of examples/first_program.cpp after its SPDX line");
  REQUIRE(readme.find("```cpp\n" + program + "```\n") != std::string::npos);
}

TEST_CASE("docs: the README's test command is the one .ci/run runs", "[docs]") {
  const std::string readme = slurp(kRoot / "README.md");
  const std::string ci = slurp(kRoot / ".ci" / "run");
  const std::string command = first_line_starting(ci, "cmake -S . -B build ");
  INFO(".ci/run runs: " << command);
  REQUIRE_FALSE(command.empty());
  REQUIRE(readme.find("\n" + command + "\n") != std::string::npos);
  // and the quick start's first line installs, builds and runs the demo
  REQUIRE(readme.find("\nbash .ci/install-deps.sh && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && "
                      "cmake --build build -j2 --target demo && ./build/demo\n") != std::string::npos);
}

TEST_CASE("docs: every relative link in README.md and docs/ names an existing file and heading", "[docs]") {
  std::vector<fs::path> pages = {kRoot / "README.md"};
  for (const auto& e : fs::directory_iterator(kRoot / "docs"))
    if (e.path().extension() == ".md") pages.push_back(e.path());
  REQUIRE(pages.size() > 1);
  const std::regex link(R"(\]\(([^)#\s]*)(#[^)\s]*)?\))");
  for (const fs::path& page : pages) {
    const std::string text = slurp(page);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), link); it != std::sregex_iterator(); ++it) {
      const std::string target = (*it)[1].str();
      const std::string anchor = (*it)[2].matched ? (*it)[2].str().substr(1) : "";
      if (target.find("://") != std::string::npos) continue;  // a URL
      const fs::path file = target.empty() ? page : page.parent_path() / target;
      INFO(page.filename().string() << " links to " << target << (anchor.empty() ? "" : "#" + anchor));
      REQUIRE(fs::exists(file));
      if (!anchor.empty() && file.extension() == ".md") {
        const auto anchors = anchors_of(slurp(file));
        REQUIRE(std::find(anchors.begin(), anchors.end(), anchor) != anchors.end());
      }
    }
  }
}
