//===- MiniTokenizer.h - a 32-token tokenizer for engine tests --*- C++ -*-===//
//
// SentencePiece-style BPE without merges: <unk> <s> </s>, "▁", the letters
// a-z (ids 4..29) and the two byte tokens of "é" (30, 31), so that every
// token of the fake model decodes to at most one character.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TEST_UNIT_RUNTIME_ENGINE_MINITOKENIZER_H
#define OPTMLIR_TEST_UNIT_RUNTIME_ENGINE_MINITOKENIZER_H

#include "runtime/tokenizer/Tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <stdexcept>

namespace optrt {

inline const Tokenizer &miniTokenizer() {
  static std::unique_ptr<Tokenizer> tokenizer = [] {
    using nlohmann::json;
    json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"\u2581", 3}};
    for (int i = 0; i < 26; ++i)
      vocab[std::string(1, static_cast<char>('a' + i))] = 4 + i;
    vocab["<0xC3>"] = 30;
    vocab["<0xA9>"] = 31;
    auto special = [](int id, const char *content) {
      return json{
          {"id", id},        {"content", content}, {"single_word", false},
          {"lstrip", false}, {"rstrip", false},    {"normalized", false},
          {"special", true}};
    };
    json j = {
        {"version", "1.0"},
        {"added_tokens",
         {special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")}},
        {"normalizer",
         {{"type", "Sequence"},
          {"normalizers",
           {{{"type", "Prepend"}, {"prepend", "\u2581"}},
            {{"type", "Replace"},
             {"pattern", {{"String", " "}}},
             {"content", "\u2581"}}}}}},
        {"pre_tokenizer", nullptr},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single",
           {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"special_tokens",
           {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders",
           {{{"type", "Replace"},
             {"pattern", {{"String", "\u2581"}}},
             {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"},
             {"content", " "},
             {"start", 1},
             {"stop", 0}}}}}},
        {"model",
         {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", "<unk>"},
          {"fuse_unk", true},
          {"byte_fallback", true},
          {"vocab", vocab},
          {"merges", json::array()}}}};
    std::string error;
    auto t = Tokenizer::fromJson(j.dump(), &error);
    if (!t)
      ADD_FAILURE() << "mini tokenizer: " << error;
    return t;
  }();
  if (!tokenizer)
    throw std::runtime_error("the mini tokenizer did not load");
  return *tokenizer;
}

} // namespace optrt

#endif // OPTMLIR_TEST_UNIT_RUNTIME_ENGINE_MINITOKENIZER_H
