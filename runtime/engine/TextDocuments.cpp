//===- TextDocuments.cpp - text files that tools read documents from ------===//

#include "runtime/engine/TextDocuments.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace optrt {

bool readTextFile(const std::string &path, std::string &text,
                  std::string &error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  text.assign(std::istreambuf_iterator<char>(in),
              std::istreambuf_iterator<char>());
  if (in.bad()) {
    error = std::string("cannot read: ") + std::strerror(errno);
    return false;
  }
  return true;
}

bool readJsonLinesField(const std::string &text, const char *field,
                        std::vector<std::string> &values, std::string &error) {
  std::istringstream lines(text);
  std::string line;
  for (int lineNumber = 1; std::getline(lines, line); ++lineNumber) {
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    std::string where = "line " + std::to_string(lineNumber) + ": ";
    if (j.is_discarded()) {
      error = where + "not valid JSON";
      return false;
    }
    auto value = j.is_object() ? j.find(field) : j.end();
    if (!j.is_object() || value == j.end() || !value->is_string()) {
      error = where + "expected an object with a string \"" + field + "\"";
      return false;
    }
    values.push_back(value->get<std::string>());
  }
  return true;
}

bool readDocuments(const std::string &path, std::vector<std::string> &documents,
                   std::string &error) {
  std::string all;
  if (!readTextFile(path, all, error))
    return false;
  size_t first = all.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || all[first] != '{') {
    documents.push_back(std::move(all));
    return true;
  }
  return readJsonLinesField(all, "text", documents, error);
}

} // namespace optrt
