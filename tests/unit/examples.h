// Test helper: the text of a bundled example graph.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace kiln::testing {

// The checkout is KILN_SOURCE_DIR from the environment when set (a test binary carried
// to another machine), else the one it was built from.
inline std::string readExample(const std::string &name) {
  const char *dir = std::getenv("KILN_SOURCE_DIR");
  std::ifstream in(std::string(dir ? dir : KILN_SOURCE_DIR) + "/examples/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace kiln::testing
