//===- TextDocuments.h - text files that tools read documents from -*- C++
//-*-===//
//
// Evaluation and calibration text comes as JSON lines with a "text" field
// (../shared/models/eval/dev.jsonl) or as one plain text file.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_ENGINE_TEXTDOCUMENTS_H
#define OPTMLIR_RUNTIME_ENGINE_TEXTDOCUMENTS_H

#include <string>
#include <vector>

namespace optrt {

/// The whole file at `path`; on failure `error` says why, without the path.
bool readTextFile(const std::string &path, std::string &text,
                  std::string &error);

/// Reads JSON lines whose objects hold a string `field` (blank lines are
/// skipped) from `text`; errors name the line.
bool readJsonLinesField(const std::string &text, const char *field,
                        std::vector<std::string> &values, std::string &error);

/// The documents of `path`: JSON lines with a "text" field when the file
/// starts with '{', else the whole file as one document.
bool readDocuments(const std::string &path, std::vector<std::string> &documents,
                   std::string &error);

} // namespace optrt

#endif // OPTMLIR_RUNTIME_ENGINE_TEXTDOCUMENTS_H
