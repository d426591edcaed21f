// What the command-line tools share: argument reading, input and output files, errors.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>

#include "compiler/compile.h"
#include "ir/support.h"

namespace kiln::tools {

// Reads a file, or standard input for "-".
inline Expected<std::string> readInput(const std::string &path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return makeError("error: cannot open '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes to a file, or standard output when `path` is empty.
inline Status writeOutput(const std::string &path, const std::string &data) {
  if (path.empty() || path == "-") {
    std::fwrite(data.data(), 1, data.size(), stdout);
    return std::fflush(stdout) == 0 ? Status::ok()
                                    : Status(makeError("error: cannot write stdout"));
  }
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out)
    return makeError("error: cannot write '" + path + "'");
  return Status::ok();
}

inline int fail(const std::string &message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  return 1;
}

inline int usageError(const char *tool, const std::string &message) {
  std::fprintf(stderr, "%s: error: %s (see --help)\n", tool, message.c_str());
  return 1;
}

// True when `arg` is one of the code generation flags the tools share (--wgmma,
// --quick-ptx); it sets that choice in `opts`.
inline bool codeFlag(std::string_view arg, compiler::CompileOptions &opts) {
  if (arg == "--wgmma")
    opts.warpgroupMatrix = true;
  else if (arg == "--quick-ptx")
    opts.quickPtx = true;
  else
    return false;
  return true;
}

// Walks argv; options take values as `--name=value` or `--name value`.
class ArgReader {
public:
  ArgReader(int argc, char **argv) : argc_(argc), argv_(argv) {}
  bool more() const { return i_ < argc_; }
  std::string_view next() { return argv_[i_++]; }
  bool ok() const { return error_.empty(); }
  const std::string &error() const { return error_; }

  // True when `arg` is option `name`; `value` gets its value.
  bool value(std::string_view arg, std::string_view name, std::string_view &value) {
    if (!arg.starts_with(name))
      return false;
    std::string_view rest = arg.substr(name.size());
    if (rest.starts_with("=")) {
      value = rest.substr(1);
      return true;
    }
    if (!rest.empty())
      return false;
    if (i_ >= argc_) {
      error_ = std::string(name) + " needs a value";
      value = {};
      return true;
    }
    value = argv_[i_++];
    return true;
  }

  // True when `arg` is option `name`; `count` gets its value, which must be a positive
  // integer (else the reader's error says so).
  bool count(std::string_view arg, std::string_view name, int &count) {
    std::string_view v;
    if (!value(arg, name, v))
      return false;
    count = std::atoi(std::string(v).c_str());
    if (ok() && count < 1)
      error_ = std::string(name) + " needs a positive count";
    return true;
  }

private:
  int argc_;
  char **argv_;
  int i_ = 1;
  std::string error_;
};

} // namespace kiln::tools
