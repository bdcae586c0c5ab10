//===- Jinja.h - The Jinja2 subset that chat templates use ------*- C++ -*-===//
//
// Hugging Face checkpoints carry their chat template as Jinja2 source
// (tokenizer_config.json "chat_template"), and transformers renders it in an
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with
// loop controls, a `tojson` filter that is Python's json.dumps
// (ensure_ascii=False), and the globals raise_exception and strftime_now.
// This is an interpreter of the part of that language chat templates use,
// with those settings, rendering what Python's jinja2 renders:
//
//  * tags: if/elif/else, for (tuple targets, `if` filters, else, loop.*),
//    set (names, tuples, namespace attributes, set blocks), macro, break,
//    continue, raw, generation (rendered as its body), comments, whitespace
//    control (`-`, `+`);
//  * expressions: literals (strings, numbers, lists, tuples, dicts), names,
//    attributes, subscripts and slices, calls with keyword arguments,
//    filters, tests (`is`, `is not`), `not and or`, comparisons (chained),
//    `in`, `not in`, `+ - * / // % **`, `~`, `a if c else b`;
//  * the filters, tests, functions and str/dict methods of kFilters etc. in
//    Jinja.cpp (trim, length, tojson, selectattr, map, namespace(), range(),
//    .strip(), .items(), ...).
//
// Anything else (extends, include, import, call blocks, filter blocks, an
// unknown filter, test, function or method) is refused when the template is
// parsed, with one line naming it and its line, so that a server refuses a
// template it cannot render when it starts rather than on a request.
//
// Values follow Python: ints are 64-bit (overflow is an error, not a
// bignum), strings are UTF-8 indexed by code point, dicts keep insertion
// order, and printing uses Python's str() and repr(). Rendering is bounded
// (output size, loop iterations, macro depth) so that no template hangs.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CHAT_JINJA_H
#define OPTMLIR_RUNTIME_CHAT_JINJA_H

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace optrt {
namespace jinja {

class Value;
class Dict;
struct Function;

using List = std::vector<Value>;

/// A Jinja value: Python's None, bool, int, float, str, list, dict, or a
/// callable, and Jinja's Undefined (what a missing name or key gives).
class Value {
public:
  enum class Kind {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Dict,
    Function
  };

  Value() = default;
  static Value undefined(std::string hint = "");
  static Value none();
  Value(bool b);
  Value(int64_t i);
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(double f);
  Value(std::string s);
  Value(const char *s) : Value(std::string(s)) {}
  Value(List items);
  Value(Dict dict);
  static Value function(std::shared_ptr<const Function> fn);
  /// A namespace() object: a dict whose attributes `set` may assign.
  static Value makeNamespace(Dict dict);

  Kind kind() const { return k; }
  bool isUndefined() const { return k == Kind::Undefined; }
  bool isNone() const { return k == Kind::None; }
  bool isString() const { return k == Kind::String; }
  bool isList() const { return k == Kind::List; }
  bool isDict() const { return k == Kind::Dict; }
  /// Int or Bool (bool is an int in Python).
  bool isInteger() const { return k == Kind::Int || k == Kind::Bool; }
  bool isNumber() const { return isInteger() || k == Kind::Float; }
  bool isNamespace() const { return k == Kind::Dict && ns; }

  bool asBool() const { return std::get<bool>(data); }
  int64_t asInt() const {
    return k == Kind::Bool ? (asBool() ? 1 : 0) : std::get<int64_t>(data);
  }
  double asFloat() const {
    return k == Kind::Float ? std::get<double>(data)
                            : static_cast<double>(asInt());
  }
  const std::string &asString() const { return *std::get<StringPtr>(data); }
  const List &asList() const { return *std::get<ListPtr>(data); }
  const Dict &asDict() const { return *std::get<DictPtr>(data); }
  /// The dict itself, shared by every copy of this value: what
  /// `set ns.x = ...` writes into a namespace, and what the renderer
  /// updates in its loop object between iterations.
  Dict &mutableDict() const { return *std::get<DictPtr>(data); }
  const Function &asFunction() const { return *std::get<FunctionPtr>(data); }
  /// What an Undefined stands for, for messages ("'x' is undefined").
  const std::string &undefinedHint() const;

  /// Python truthiness.
  bool truthy() const;

private:
  using StringPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const List>;
  using DictPtr = std::shared_ptr<Dict>;
  using FunctionPtr = std::shared_ptr<const Function>;

  Kind k = Kind::Undefined;
  /// A namespace() (a Dict whose attributes may be set).
  bool ns = false;
  /// Containers are shared, never copied: templates cannot change them
  /// (transformers renders in an immutable sandbox), namespaces aside.
  std::variant<std::monostate, bool, int64_t, double, StringPtr, ListPtr,
               DictPtr, FunctionPtr>
      data;
};

/// A dict with string keys in insertion order (templates only ever index
/// dicts by strings).
class Dict {
public:
  const Value *find(std::string_view key) const;
  /// Inserts or replaces, keeping the first insertion's position.
  void set(const std::string &key, Value value);
  const std::vector<std::pair<std::string, Value>> &items() const {
    return entries;
  }
  size_t size() const { return entries.size(); }

private:
  std::vector<std::pair<std::string, Value>> entries;
};

/// Positional and keyword arguments of a call.
struct Arguments {
  List positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

/// A callable value: a built-in function or a macro. Returns false and sets
/// `error` on failure.
struct Function {
  std::string name;
  std::function<bool(const Arguments &, Value &result, std::string &error)>
      call;
};

/// Python's str() of a value (Undefined is empty), as {{ value }} prints.
std::string toString(const Value &value);
/// Python's repr().
std::string toRepr(const Value &value);
/// How toJson writes: Python's json.dumps arguments.
struct JsonStyle {
  /// < 0: one line (indent=None).
  int indent = -1;
  bool ensureAscii = false;
  bool sortKeys = false;
  /// Empty: json.dumps's defaults (", " or "," with an indent; ": ").
  std::string itemSeparator, keySeparator;
};

/// Python's json.dumps(value, ...); false for values JSON cannot hold
/// (Undefined, a function).
bool toJson(const Value &value, std::string &out, std::string &error,
            const JsonStyle &style = JsonStyle());

class Template {
public:
  /// Parses `source` with Hugging Face's settings (trim_blocks,
  /// lstrip_blocks, one trailing newline dropped). Returns nullptr and sets
  /// `error` to one line ("line 3: unsupported filter 'wordwrap'") when the
  /// template is malformed or uses something this subset does not have.
  static std::unique_ptr<Template> parse(std::string_view source,
                                         std::string &error);
  ~Template();
  Template(const Template &) = delete;
  Template &operator=(const Template &) = delete;

  /// Renders with `variables` visible as globals, beside the built-ins
  /// (range, namespace, dict, raise_exception, strftime_now). On failure
  /// returns false with `error` set: the message given to raise_exception
  /// as it is, or "line N: <what went wrong>".
  bool render(const Dict &variables, std::string &out,
              std::string &error) const;

  struct Node;

private:
  explicit Template(std::unique_ptr<Node> root);
  std::unique_ptr<Node> root;
};

} // namespace jinja
} // namespace optrt

#endif // OPTMLIR_RUNTIME_CHAT_JINJA_H
