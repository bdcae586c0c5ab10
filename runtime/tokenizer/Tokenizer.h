//===- Tokenizer.h - Hugging Face tokenizer.json runtime tokenizer --------===//
//
// A tokenizer that loads a Hugging Face `tokenizer.json` and encodes/decodes
// token for token like the `tokenizers` library, for the two layouts the
// Llama family uses:
//
//  * Byte-level BPE (Llama 3): pre-tokenizer Sequence[Split(regex, Isolated),
//    ByteLevel], BPE model with merges, TemplateProcessing post-processor,
//    ByteLevel decoder.
//  * SentencePiece-style BPE (Llama 2): normalizer Prepend("▁") +
//    Replace(" ", "▁") (or a Metaspace pre-tokenizer), BPE with
//    byte_fallback and `<0xNN>` tokens, decoder Replace + ByteFallback +
//    Fuse + Strip.
//
// Any other component type is rejected at load time with a message naming it
// ("unsupported pre_tokenizer type 'X'"). No function throws; loading returns
// nullptr and a one-line message on bad input.
//
// Bytes, not Unicode strings. `tokenizers` only accepts valid Unicode (a
// Python str), so this API defines what it does beyond that:
//  * encode() accepts any bytes. A byte that is not part of a valid UTF-8
//    sequence is matched by nothing in the pre-tokenizer regex and stands as
//    its own piece; byte-level models encode it as the byte it is (its
//    byte-level symbol), byte_fallback models as its `<0xNN>` token.
//  * decode() returns the exact bytes the tokens stand for. Where those bytes
//    are not valid UTF-8 (a partial character, a stray byte token),
//    `tokenizers` would substitute U+FFFD; here they come back unchanged so
//    that decode(a) + decode(b) == decode(a + b) for byte-level models and a
//    streaming decoder can reassemble characters split across tokens. Use
//    sanitizeUtf8() for display where replacement characters are wanted.
//
//===----------------------------------------------------------------------===//

#ifndef OPTRT_TOKENIZER_TOKENIZER_H
#define OPTRT_TOKENIZER_TOKENIZER_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optrt {

class Tokenizer {
public:
  /// Parses a tokenizer.json document. Returns nullptr and sets *error (when
  /// non-null) to a one-line message if the text is not valid JSON, lacks a
  /// model, or uses a component this runtime does not implement.
  static std::unique_ptr<Tokenizer> fromJson(std::string_view jsonText,
                                             std::string *error);
  /// Reads and parses a tokenizer.json file; same contract as fromJson().
  static std::unique_ptr<Tokenizer> fromFile(const std::string &path,
                                             std::string *error);

  ~Tokenizer();
  Tokenizer(const Tokenizer &) = delete;
  Tokenizer &operator=(const Tokenizer &) = delete;

  /// Encodes text (any bytes; see the file comment). Added/special tokens
  /// written in the text (e.g. "<s>") are recognized as in `tokenizers`. When
  /// addSpecialTokens is true the post-processor template is applied (e.g. a
  /// leading BOS). Thread-safe.
  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecialTokens) const;

  /// Decodes ids to the exact bytes they stand for. Ids outside the
  /// vocabulary are skipped, as `tokenizers` does. Thread-safe.
  std::string decode(const std::vector<int32_t> &ids,
                     bool skipSpecialTokens) const;
  std::string decode(const int32_t *ids, size_t count,
                     bool skipSpecialTokens) const;

  /// The token's vocabulary string (e.g. "Ġthe", "▁the", "<0x0A>", "<s>");
  /// empty if id is unknown.
  std::string tokenToString(int32_t id) const;
  /// The id of a vocabulary or added-token string, if any.
  std::optional<int32_t> tokenId(std::string_view token) const;

  /// One past the largest id of the model vocabulary and the added tokens:
  /// the number of embedding rows the tokenizer can address.
  int32_t vocabSize() const;
  /// True for added tokens marked special (skipped by decode(ids, true)).
  bool isSpecialToken(int32_t id) const;

  /// BOS: the leading special token of the post-processor template, else an
  /// added token named <s>, <|begin_of_text|> or <bos>. EOS: an added token
  /// named </s>, <|end_of_text|> or <eos>. tokenizer.json does not name
  /// them; generation_config.json is authoritative where it exists.
  std::optional<int32_t> bosId() const;
  std::optional<int32_t> eosId() const;

  struct Impl;

private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Incremental detokenizer for streaming generation: push ids one at a time
/// and get back the text they completed. Bytes of a UTF-8 sequence that is
/// still incomplete are held back until a later token completes it; bytes
/// that can never become valid UTF-8 are passed through as they are. The
/// concatenation of every push() and a final flush() equals
/// tokenizer.decode(allIds, skipSpecialTokens). Work per push is bounded by a
/// small context window, not by the length of the generation.
class StreamingDecoder {
public:
  /// The tokenizer must outlive the decoder.
  explicit StreamingDecoder(const Tokenizer &tokenizer,
                            bool skipSpecialTokens = false);

  /// Adds one id; returns the newly completed text (possibly empty).
  std::string push(int32_t id);
  /// Returns any held-back bytes (an incomplete UTF-8 tail) and resets.
  std::string flush();
  /// Forgets all state, e.g. between requests.
  void reset();

private:
  const Tokenizer &tokenizer_;
  bool skipSpecialTokens_;
  std::vector<int32_t> context_; // recent ids; decoded together for context
  size_t emitted_ = 0;           // bytes of decode(context_) already returned
};

/// Replaces each maximal invalid UTF-8 subsequence with U+FFFD, the way
/// Rust's String::from_utf8_lossy does (what `tokenizers` returns).
std::string sanitizeUtf8(std::string_view bytes);

} // namespace optrt

#endif // OPTRT_TOKENIZER_TOKENIZER_H
