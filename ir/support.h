// Errors as values: Status and Expected<T>, used across every kiln library boundary.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace kiln {

// A user-facing error: one line, already carrying its location where one exists.
struct Error {
  std::string message;
};

class [[nodiscard]] Status {
public:
  Status() = default;
  Status(Error e) : error_(std::move(e.message)), failed_(true) {}
  static Status ok() { return Status(); }

  explicit operator bool() const { return !failed_; }
  bool failed() const { return failed_; }
  const std::string &message() const { return error_; }

private:
  std::string error_;
  bool failed_ = false;
};

template <class T> class [[nodiscard]] Expected {
public:
  Expected(T value) : v_(std::move(value)) {}
  Expected(Error e) : v_(std::move(e)) {}
  Expected(Status s) : v_(Error{s.message()}) {
    assert(s.failed() && "Expected from an ok Status");
  }

  explicit operator bool() const { return v_.index() == 0; }
  T &operator*() { return std::get<0>(v_); }
  const T &operator*() const { return std::get<0>(v_); }
  T *operator->() { return &std::get<0>(v_); }
  const T *operator->() const { return &std::get<0>(v_); }
  const std::string &message() const { return std::get<1>(v_).message; }
  Status status() const { return *this ? Status() : Status(std::get<1>(v_)); }
  Error error() const { return std::get<1>(v_); }

private:
  std::variant<T, Error> v_;
};

inline Error makeError(std::string message) { return Error{std::move(message)}; }

} // namespace kiln
