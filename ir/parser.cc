// The .kir lexer and recursive-descent parser; the grammar is in docs/kir.md.
#include "ir/parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "ir/verifier.h"

namespace kiln::ir {

namespace {

enum class Tok : uint8_t { Ident, Value, Global, Number, Punct, End };

struct Token {
  Tok kind;
  std::string_view text;
  Loc loc;
};

bool isIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool isIdentChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
}

class Lexer {
public:
  explicit Lexer(std::string_view s) : s_(s) {}

  // Tokens up to End; an unexpected character is returned as a one-char Punct that the
  // parser then reports as unexpected.
  std::vector<Token> run() {
    std::vector<Token> out;
    for (;;) {
      skipSpace();
      Loc loc{line_, col()};
      if (i_ >= s_.size()) {
        out.push_back({Tok::End, {}, loc});
        return out;
      }
      size_t start = i_;
      char c = s_[i_];
      Tok kind = Tok::Punct;
      if (c == '%' || c == '@') {
        ++i_;
        while (i_ < s_.size() && isIdentChar(s_[i_]))
          ++i_;
        kind = c == '%' ? Tok::Value : Tok::Global;
      } else if (isIdentStart(c)) {
        while (i_ < s_.size() && isIdentChar(s_[i_]))
          ++i_;
        kind = Tok::Ident;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lexNumber();
        kind = Tok::Number;
      } else if (c == '-' && i_ + 1 < s_.size() && s_[i_ + 1] == '>') {
        i_ += 2;
      } else {
        ++i_;
      }
      out.push_back({kind, s_.substr(start, i_ - start), loc});
    }
  }

private:
  void lexNumber() {
    auto digits = [&] {
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_])))
        ++i_;
    };
    digits();
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      digits();
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      size_t save = i_++;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-'))
        ++i_;
      if (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_])))
        digits();
      else
        i_ = save;
    }
  }
  void skipSpace() {
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == '\n') {
        ++line_;
        lineStart_ = ++i_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++i_;
      } else if (c == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '/') {
        while (i_ < s_.size() && s_[i_] != '\n')
          ++i_;
      } else {
        return;
      }
    }
  }
  int col() const { return static_cast<int>(i_ - lineStart_) + 1; }

  std::string_view s_;
  size_t i_ = 0, lineStart_ = 0;
  int line_ = 1;
};

std::string describe(const Token &t) {
  if (t.kind == Tok::End)
    return "end of input";
  std::string text(t.text.substr(0, 32));
  for (char &c : text)
    if (!std::isprint(static_cast<unsigned char>(c)))
      c = '?';
  return "'" + text + "'";
}

class Parser {
public:
  Parser(std::string_view text, std::string_view file) : toks_(Lexer(text).run()), file_(file) {}

  Expected<Graph> run() {
    if (Status s = parseGraphDecl(); s.failed())
      return s;
    if (Status s = verify(g_); s.failed())
      return makeError(std::string(file_) + (s.message().starts_with("error:") ? ": " : ":") +
                       s.message());
    if (Status s = checkResults(); s.failed())
      return s;
    return std::move(g_);
  }

private:
  // ---- token helpers ----
  const Token &peek() const { return toks_[pos_]; }
  const Token &next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }
  bool isPunct(std::string_view p) const { return peek().kind == Tok::Punct && peek().text == p; }
  bool isKeyword(std::string_view k) const { return peek().kind == Tok::Ident && peek().text == k; }
  bool accept(std::string_view p) {
    if (!isPunct(p))
      return false;
    next();
    return true;
  }
  Error errorAt(Loc loc, const std::string &msg) const {
    return makeError(std::string(file_) + ":" + std::to_string(loc.line) + ":" +
                     std::to_string(loc.col) + ": error: " + msg);
  }
  Error expected(const std::string &what) const {
    return errorAt(peek().loc, "expected " + what + ", got " + describe(peek()));
  }
  Status expect(std::string_view p) {
    if (accept(p))
      return Status::ok();
    return expected("'" + std::string(p) + "'");
  }
  Status expectKeyword(std::string_view k) {
    if (!isKeyword(k))
      return expected("'" + std::string(k) + "'");
    next();
    return Status::ok();
  }

  // ---- numbers ----
  Expected<int64_t> parseInt() {
    bool neg = accept("-");
    if (peek().kind != Tok::Number)
      return expected("an integer");
    const Token &t = next();
    uint64_t v = 0;
    auto r = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
    if (r.ptr != t.text.data() + t.text.size())
      return errorAt(t.loc, "expected an integer, got " + describe(t));
    if (r.ec != std::errc() || v > static_cast<uint64_t>(INT64_MAX))
      return errorAt(t.loc, "integer " + describe(t) + " is out of range");
    return neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  }
  Expected<double> parseFloat() {
    bool neg = accept("-");
    const Token &t = peek();
    double v = 0;
    if (t.kind == Tok::Ident && (t.text == "nan" || t.text == "inf")) {
      v = t.text == "nan" ? NAN : INFINITY;
    } else if (t.kind == Tok::Number) {
      auto r = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
      if (r.ec == std::errc::result_out_of_range)
        return errorAt(t.loc, "number " + describe(t) + " is out of range");
      if (r.ec != std::errc() || r.ptr != t.text.data() + t.text.size())
        return expected("a number");
    } else {
      return expected("a number");
    }
    next();
    return neg ? -v : v;
  }

  // ---- dims and types ----
  // A symbolic dim by name; in the signature it may be used before its `dim` line.
  Expected<int> lookupDim(const Token &t) {
    int i = g_.findDim(t.text);
    if (i >= 0)
      return i;
    if (!inSignature_)
      return errorAt(t.loc, "unknown dim '" + std::string(t.text) + "'");
    g_.dims.push_back({std::string(t.text), -1, -1});
    firstUse_.push_back(t.loc);
    return static_cast<int>(g_.dims.size()) - 1;
  }
  Expected<Dim> parseDim() {
    if (peek().kind != Tok::Ident) {
      auto v = parseInt();
      if (!v)
        return v.error();
      return Dim::of(*v);
    }
    auto sym = lookupDim(next());
    if (!sym)
      return sym.error();
    int64_t off = 0;
    if (isPunct("+") || isPunct("-")) {
      bool neg = next().text == "-";
      auto v = parseInt();
      if (!v)
        return v.error();
      off = neg ? -*v : *v;
    }
    return Dim::symbol(*sym, off);
  }
  Expected<TensorType> parseType() {
    if (peek().kind != Tok::Ident)
      return expected("a tensor type");
    const Token &t = next();
    auto dt = parseDType(t.text);
    if (!dt)
      return errorAt(t.loc, "unknown dtype " + describe(t));
    TensorType type{*dt, {}};
    if (Status s = expect("["); s.failed())
      return s;
    if (!accept("]")) {
      do {
        if (type.rank() == kMaxRank)
          return errorAt(peek().loc, "rank exceeds the limit of " + std::to_string(kMaxRank));
        auto d = parseDim();
        if (!d)
          return d.error();
        type.shape.push_back(*d);
      } while (accept(","));
      if (Status s = expect("]"); s.failed())
        return s;
    }
    return type;
  }

  // ---- attributes ----
  template <class T, class F> Expected<std::vector<T>> parseList(F item) {
    std::vector<T> out;
    if (Status s = expect("["); s.failed())
      return s;
    if (accept("]"))
      return out;
    do {
      auto v = (this->*item)();
      if (!v)
        return v.error();
      out.push_back(*v);
    } while (accept(","));
    if (Status s = expect("]"); s.failed())
      return s;
    return out;
  }
  template <class T> Expected<AttrValue> wrap(Expected<T> v) {
    if (!v)
      return v.error();
    return AttrValue(std::move(*v));
  }
  Expected<AttrValue> parseAttrValue(const AttrSpec &spec) {
    switch (spec.kind) {
    case AttrKind::Int:
      return wrap(parseInt());
    case AttrKind::Float:
      return wrap(parseFloat());
    case AttrKind::Bool:
      if (isKeyword("true") || isKeyword("false"))
        return AttrValue(next().text == "true");
      return expected("true or false");
    case AttrKind::Ints:
      return wrap(parseList<int64_t>(&Parser::parseInt));
    case AttrKind::Floats:
      return wrap(parseList<double>(&Parser::parseFloat));
    case AttrKind::Dim:
      return wrap(parseDim());
    case AttrKind::Dims:
      return wrap(parseList<Dim>(&Parser::parseDim));
    case AttrKind::Enum:
      for (const std::string &c : spec.choices)
        if (isKeyword(c))
          return AttrValue(std::string(next().text));
      std::string choices;
      for (const std::string &c : spec.choices)
        choices += (choices.empty() ? "" : " or ") + c;
      return expected(choices);
    }
    return expected("an attribute value");
  }
  Status parseAttrs(Node &n) {
    if (!accept("{"))
      return Status::ok();
    const auto &specs = opInfo(n.op).attrs;
    std::vector<bool> seen(specs.size(), false);
    do {
      if (peek().kind != Tok::Ident)
        return expected("an attribute name");
      const Token &name = next();
      size_t i = 0;
      while (i < specs.size() && specs[i].name != name.text)
        ++i;
      if (i == specs.size())
        return errorAt(name.loc, std::string(opName(n.op)) + " has no attribute " + describe(name));
      if (seen[i])
        return errorAt(name.loc, "attribute " + describe(name) + " given twice");
      seen[i] = true;
      if (Status s = expect("="); s.failed())
        return s;
      auto v = parseAttrValue(specs[i]);
      if (!v)
        return v.status();
      n.attrs[i] = std::move(*v);
      n.present[i] = true;
    } while (accept(","));
    return expect("}");
  }

  // ---- graph ----
  Expected<int> parseUse() {
    if (peek().kind != Tok::Value)
      return expected("a value name like %x");
    const Token &t = next();
    auto it = values_.find(std::string(t.text.substr(1)));
    if (it == values_.end())
      return errorAt(t.loc, "use of undefined value " + describe(t));
    return it->second;
  }
  Status define(const Token &t, Node n) {
    std::string name(t.text.substr(1));
    if (name.empty())
      return errorAt(t.loc, "a value needs a name after '%'");
    if (values_.count(name))
      return errorAt(t.loc, "value %" + name + " is defined twice");
    n.name = name;
    n.loc = t.loc;
    values_[name] = static_cast<int>(g_.nodes.size());
    g_.nodes.push_back(std::move(n));
    return Status::ok();
  }

  Status parseSignature() {
    inSignature_ = true;
    if (Status s = expect("("); s.failed())
      return s;
    if (!isPunct(")")) {
      do {
        Op op = Op::Input;
        if (isKeyword("param")) {
          next();
          op = Op::Param;
        }
        if (peek().kind != Tok::Value)
          return expected("an argument like %x");
        const Token &name = next();
        if (Status s = expect(":"); s.failed())
          return s;
        auto type = parseType();
        if (!type)
          return type.status();
        Node n = makeNode(op);
        n.type = *type;
        g_.inputs.push_back(static_cast<int>(g_.nodes.size()));
        if (Status s = define(name, std::move(n)); s.failed())
          return s;
      } while (accept(","));
    }
    if (Status s = expect(")"); s.failed())
      return s;
    if (Status s = expect("->"); s.failed())
      return s;
    if (Status s = expect("("); s.failed())
      return s;
    if (!isPunct(")")) {
      do {
        Loc loc = peek().loc;
        auto type = parseType();
        if (!type)
          return type.status();
        resultTypes_.push_back({*type, loc});
      } while (accept(","));
    }
    inSignature_ = false;
    return expect(")");
  }

  Status parseDimDecls() {
    std::vector<int> order; // declaration order
    while (isKeyword("dim")) {
      next();
      if (peek().kind != Tok::Ident)
        return expected("a dim name");
      const Token &name = next();
      if (isKeyword("in"))
        next();
      else
        return expected("'in'");
      if (Status s = expect("["); s.failed())
        return s;
      auto lo = parseInt();
      if (!lo)
        return lo.status();
      if (Status s = expect(","); s.failed())
        return s;
      auto hi = parseInt();
      if (!hi)
        return hi.status();
      if (Status s = expect("]"); s.failed())
        return s;
      if (*lo < 0 || *lo > *hi || *hi > kMaxDimValue)
        return errorAt(name.loc, "dim " + describe(name) + " needs 0 <= lo <= hi <= 2^40");
      int i = g_.findDim(name.text);
      if (i >= 0 && (std::find(order.begin(), order.end(), i) != order.end()))
        return errorAt(name.loc, "dim " + describe(name) + " is declared twice");
      if (i < 0) {
        g_.dims.push_back({std::string(name.text), 0, 0});
        firstUse_.push_back(name.loc);
        i = static_cast<int>(g_.dims.size()) - 1;
      }
      g_.dims[i].lo = *lo;
      g_.dims[i].hi = *hi;
      order.push_back(i);
    }
    for (size_t i = 0; i < g_.dims.size(); ++i)
      if (std::find(order.begin(), order.end(), static_cast<int>(i)) == order.end())
        return errorAt(firstUse_[i], "dim '" + g_.dims[i].name + "' is used but not declared");
    // Keep dims in declaration order, so printing gives the text back.
    std::vector<int> remap(g_.dims.size());
    std::vector<SymDim> sorted;
    for (int i : order) {
      remap[i] = static_cast<int>(sorted.size());
      sorted.push_back(g_.dims[i]);
    }
    g_.dims = std::move(sorted);
    auto fix = [&](TensorType &t) {
      for (Dim &d : t.shape)
        if (!d.isStatic())
          d.sym = remap[d.sym];
    };
    for (Node &n : g_.nodes)
      fix(n.type);
    for (auto &r : resultTypes_)
      fix(r.first);
    return Status::ok();
  }

  Status parseStatement() {
    const Token &name = next();
    if (Status s = expect("="); s.failed())
      return s;
    if (peek().kind != Tok::Ident)
      return expected("an op name");
    const Token &opTok = next();
    auto op = parseOpName(opTok.text);
    if (!op)
      return errorAt(opTok.loc, "unknown op " + describe(opTok));
    Node n = makeNode(*op);
    if (peek().kind == Tok::Value) {
      do {
        auto v = parseUse();
        if (!v)
          return v.status();
        n.operands.push_back(*v);
      } while (accept(","));
    }
    if (Status s = parseAttrs(n); s.failed())
      return s;
    if (Status s = expect(":"); s.failed())
      return s;
    auto type = parseType();
    if (!type)
      return type.status();
    n.type = *type;
    return define(name, std::move(n));
  }

  // `kernel @name { statements }`: the nodes fusion grouped into one kernel.
  Status parseKernel() {
    next();
    if (peek().kind != Tok::Global || peek().text.size() < 2)
      return expected("a kernel name like @k0");
    const Token &name = next();
    std::string k(name.text.substr(1));
    if (!kernelNames_.insert(k).second)
      return errorAt(name.loc, "kernel @" + k + " is defined twice");
    g_.kernels.push_back(k);
    if (Status s = expect("{"); s.failed())
      return s;
    size_t first = g_.nodes.size();
    while (peek().kind == Tok::Value)
      if (Status s = parseStatement(); s.failed())
        return s;
    if (g_.nodes.size() == first)
      return expected("a statement in kernel @" + k);
    for (size_t i = first; i < g_.nodes.size(); ++i)
      g_.nodes[i].kernel = static_cast<int>(g_.kernels.size()) - 1;
    return expect("}");
  }

  Status parseGraphDecl() {
    if (Status s = expectKeyword("graph"); s.failed())
      return s;
    if (peek().kind != Tok::Global || peek().text.size() < 2)
      return expected("a graph name like @main");
    g_.name = std::string(next().text.substr(1));
    if (Status s = parseSignature(); s.failed())
      return s;
    if (Status s = expect("{"); s.failed())
      return s;
    if (Status s = parseDimDecls(); s.failed())
      return s;
    for (;;) {
      if (peek().kind == Tok::Value) {
        if (Status s = parseStatement(); s.failed())
          return s;
      } else if (isKeyword("kernel")) {
        if (Status s = parseKernel(); s.failed())
          return s;
      } else {
        break;
      }
    }
    retLoc_ = peek().loc;
    if (Status s = expectKeyword("return"); s.failed())
      return s;
    do {
      auto v = parseUse();
      if (!v)
        return v.status();
      g_.outputs.push_back(*v);
    } while (accept(","));
    if (Status s = expect("}"); s.failed())
      return s;
    if (peek().kind != Tok::End)
      return expected("end of input");
    return Status::ok();
  }

  // The returned values against the signature; after verification, so that a node's
  // own error is reported first.
  Status checkResults() {
    if (g_.outputs.size() != resultTypes_.size())
      return errorAt(retLoc_, "returns " + std::to_string(g_.outputs.size()) +
                                  " values but the signature declares " +
                                  std::to_string(resultTypes_.size()));
    for (size_t i = 0; i < g_.outputs.size(); ++i)
      if (!(g_.nodes[g_.outputs[i]].type == resultTypes_[i].first))
        return errorAt(resultTypes_[i].second,
                       "result " + std::to_string(i) + " is declared " +
                           typeToString(resultTypes_[i].first, g_.dims) + " but %" +
                           g_.nodes[g_.outputs[i]].name + " is " +
                           typeToString(g_.nodes[g_.outputs[i]].type, g_.dims));
    return Status::ok();
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  std::string_view file_;
  Graph g_;
  std::map<std::string, int> values_;
  std::set<std::string> kernelNames_;
  std::vector<std::pair<TensorType, Loc>> resultTypes_;
  std::vector<Loc> firstUse_; // per dim, where it was first named
  bool inSignature_ = false;
  Loc retLoc_;
};

} // namespace

Expected<Graph> parseGraph(std::string_view text, std::string_view filename) {
  return Parser(text, filename).run();
}

} // namespace kiln::ir
