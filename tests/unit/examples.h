// Test helper: the text of a bundled example graph.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace kiln::testing {

inline std::string readExample(const std::string &name) {
  std::ifstream in(std::string(KILN_SOURCE_DIR) + "/examples/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace kiln::testing
