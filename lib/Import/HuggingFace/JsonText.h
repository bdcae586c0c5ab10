//===- JsonText.h - Exception-free JSON parsing for the importer -*- C++ -*-===//
//
// Private to lib/Import/HuggingFace. Parsing never throws, so the library
// behaves the same whether or not its users build with exceptions.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_LIB_IMPORT_HUGGINGFACE_JSONTEXT_H
#define OPTMLIR_LIB_IMPORT_HUGGINGFACE_JSONTEXT_H

#include "optmlir/Support/SafeTensors.h"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace optmlir::hf {

using json = nlohmann::json;

/// Accepts everything and keeps the first syntax error's reason: a DOM parse
/// without exceptions only says that it failed, not where.
struct JsonErrorCapture {
  std::string message;
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t &) {
    return true;
  }
  bool string(json::string_t &) { return true; }
  bool binary(json::binary_t &) { return true; }
  bool start_object(std::size_t) { return true; }
  bool key(json::string_t &) { return true; }
  bool end_object() { return true; }
  bool start_array(std::size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(std::size_t, const std::string &,
                   const nlohmann::detail::exception &ex) {
    std::string_view text = ex.what();
    size_t bracket = text.find("] ");
    if (bracket != std::string_view::npos)
      text.remove_prefix(bracket + 2);
    message = escapeForMessage(text, 240);
    return false;
  }
};

/// Parses `text` into `out`. On failure returns false and sets `message` to
/// the reason (one line, without a file name).
inline bool parseJsonText(std::string_view text, json &out,
                          std::string &message) {
  out = json::parse(text.data(), text.data() + text.size(), nullptr,
                    /*allow_exceptions=*/false);
  if (!out.is_discarded())
    return true;
  JsonErrorCapture capture;
  json::sax_parse(text.data(), text.data() + text.size(), &capture);
  message = capture.message.empty() ? "syntax error" : capture.message;
  return false;
}

} // namespace optmlir::hf

#endif // OPTMLIR_LIB_IMPORT_HUGGINGFACE_JSONTEXT_H
