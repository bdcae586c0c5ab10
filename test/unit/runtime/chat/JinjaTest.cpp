//===- JinjaTest.cpp - the Jinja subset against Python's jinja2 -----------===//
//
// test/data/chat_templates/language_cases.json holds small templates that
// exercise each part of the subset; expected.json holds what Python's
// jinja2 3.1.6, set up as transformers sets it up for chat templates,
// rendered for them (generate_expected.py).
//
//===----------------------------------------------------------------------===//

#include "runtime/chat/Jinja.h"
#include "runtime/chat/ChatTemplate.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using namespace optrt;
using jinja::Template;
using jinja::Value;

namespace {

std::string dataDir() {
  return std::string(OPTMLIR_SOURCE_DIR) + "/test/data/chat_templates/";
}

nlohmann::ordered_json readJson(const std::string &name) {
  std::ifstream in(dataDir() + name);
  EXPECT_TRUE(in) << "cannot open " << name;
  return nlohmann::ordered_json::parse(in);
}

/// Renders `source` with `variables`; "ERROR: <message>" on failure.
std::string render(const std::string &source,
                   const jinja::Dict &variables = {}) {
  std::string error;
  std::unique_ptr<Template> t = Template::parse(source, error);
  if (!t)
    return "ERROR: " + error;
  std::string out;
  if (!t->render(variables, out, error))
    return "ERROR: " + error;
  return out;
}

TEST(JinjaTest, LanguageCasesRenderAsPythonJinja2Does) {
  nlohmann::ordered_json cases = readJson("language_cases.json");
  nlohmann::ordered_json expected = readJson("expected.json")["language"];
  ASSERT_GT(cases.size(), 80u);
  for (const auto &c : cases) {
    std::string name = c["name"];
    SCOPED_TRACE(name);
    ASSERT_TRUE(expected.contains(name)) << "regenerate expected.json";
    const auto &want = expected[name];
    jinja::Value variables = jsonToValue(c["variables"]);
    std::string error;
    std::unique_ptr<Template> t =
        Template::parse(c["template"].get<std::string>(), error);
    if (want.contains("output")) {
      ASSERT_TRUE(t) << error;
      std::string out;
      ASSERT_TRUE(t->render(variables.asDict(), out, error)) << error;
      EXPECT_EQ(out, want["output"].get<std::string>());
      continue;
    }
    // Errors: raise_exception's message exactly; others only as errors
    // (Python's messages name Python types).
    std::string out;
    bool rendered = t && t->render(variables.asDict(), out, error);
    EXPECT_FALSE(rendered) << "rendered '" << out << "', jinja2 said "
                           << want.dump();
    if (want.contains("raise"))
      EXPECT_EQ(error, want["raise"].get<std::string>());
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
}

TEST(JinjaTest, UnsupportedConstructsFailAtParseWithOneLine) {
  const std::pair<const char *, const char *> cases[] = {
      {"{% include 'x' %}", "line 1: unsupported tag 'include'"},
      {"{% extends 'base' %}", "line 1: unsupported tag 'extends'"},
      {"{% filter upper %}x{% endfilter %}",
       "line 1: unsupported tag 'filter'"},
      {"a\n{{ x | wordwrap }}", "line 2: unsupported filter 'wordwrap'"},
      {"{{ x is prime }}", "line 1: unsupported test 'prime'"},
      {"{{ lipsum() }}", "line 1: unsupported function 'lipsum'"},
      {"{{ 'a'.zfill(3) }}", "line 1: unsupported method 'zfill'"},
      {"{% for x in y recursive %}{% endfor %}",
       "line 1: unsupported recursive for loop"},
      {"{% break %}", "line 1: 'break' outside a for loop"},
      {"{% if x %}", "line 1: missing {% endif %}"},
      {"{% endif %}", "line 1: unexpected {% endif %}"},
      {"{{ x ", "line 1: the tag is not closed with '}}'"},
      {"{# x", "line 1: the comment is not closed"},
      {"{{ 'abc }}", "line 1: the string is not closed"},
      {"{{ x $ y }}", "line 1: unexpected character '$'"},
      {"{% raw %}x", "line 1: {% raw %} without {% endraw %}"},
      {"{{ (1 }}", "line 1: the tag is not closed with '}}'"},
      {"{{ (1 ] }}", "line 1: expected ')', got ']'"},
      {"{{ }}", "line 1: expected an expression, got '}}'"},
      {"{% set %}", "line 1: expected a name, got '%}'"},
  };
  for (const auto &[source, message] : cases)
    EXPECT_EQ(render(source), std::string("ERROR: ") + message) << source;

  // Deep nesting is refused, not a stack overflow.
  EXPECT_EQ(render("{{ " + std::string(5000, '(') + "1" +
                   std::string(5000, ')') + " }}")
                .rfind("ERROR: line 1: the expression is nested too deeply", 0),
            0u);
  EXPECT_EQ(render(std::string(2000, '{') + "% if x %}").substr(0, 6),
            "ERROR:");
}

TEST(JinjaTest, RenderingIsBounded) {
  EXPECT_EQ(render("{% for i in range(20000) %}{% endfor %}"),
            "ERROR: line 1: range() is longer than 10,000 items");
  EXPECT_EQ(render("{% for i in range(10000) %}{% for j in range(100) %}"
                   "{% endfor %}{% endfor %}"),
            "ERROR: line 1: the template runs too long");
  EXPECT_EQ(render("{{ 'x' * 100000000 }}"),
            "ERROR: line 1: a repetition is larger than 16 MiB");
  EXPECT_EQ(render("{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}"),
            "ERROR: line 1: the output is larger than 16 MiB");
  EXPECT_EQ(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
            "ERROR: line 1: macros call each other too deeply");
  EXPECT_EQ(render("{{ 9223372036854775807 + 1 }}"),
            "ERROR: line 1: integer overflow (Python would use a bignum)");
}

TEST(JinjaTest, ErrorsNameTheLine) {
  EXPECT_EQ(render("a\nb\n{{ missing.attr }}"),
            "ERROR: line 3: 'missing' is undefined");
  EXPECT_EQ(render("{% for m in messages %}\n{{ m.x.y }}{% endfor %}",
                   jsonToValue(nlohmann::ordered_json::parse(
                                   R"({"messages": [{"role": "user"}]})"))
                       .asDict()),
            "ERROR: line 2: 'dict object' has no attribute 'x'");
  // raise_exception's message stands alone, as transformers shows it.
  EXPECT_EQ(render("\n{{ raise_exception('roles must alternate') }}"),
            "ERROR: roles must alternate");
}

TEST(JinjaTest, ValuesPrintAsPython) {
  EXPECT_EQ(jinja::toString(Value(0.1)), "0.1");
  EXPECT_EQ(jinja::toString(Value(1e22)), "1e+22");
  EXPECT_EQ(jinja::toString(Value(1e-7)), "1e-07");
  EXPECT_EQ(jinja::toString(Value(100.0)), "100.0");
  EXPECT_EQ(jinja::toString(Value(-2.5e-3)), "-0.0025");
  EXPECT_EQ(jinja::toString(Value(1.0 / 3)), "0.3333333333333333");
  EXPECT_EQ(jinja::toRepr(Value("it's")), "\"it's\"");
  std::string json, error;
  jinja::Dict dict;
  dict.set("b", Value(jinja::List{Value(int64_t(1)), Value::none()}));
  dict.set("a", Value("\x01"));
  ASSERT_TRUE(jinja::toJson(Value(dict), json, error));
  EXPECT_EQ(json, R"({"b": [1, null], "a": "\u0001"})");
  EXPECT_FALSE(jinja::toJson(Value::undefined(), json, error));
}

} // namespace
