// BERT WordPiece tokenizer (uncased), as specified in docs/model-spec.md section 2.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace strand {

// True when `text` is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view text);

class WordPieceTokenizer {
 public:
  // vocab: tokens in id order. Throws Error(invalid_file) if [PAD] [UNK] [CLS] [SEP] are missing,
  // a token repeats, is empty or is not valid UTF-8; Error(invalid_argument) if max_positions < 2.
  WordPieceTokenizer(std::vector<std::string> vocab, bool lowercase, int max_positions);

  // [CLS] ... [SEP], truncated to max_positions. Throws Error(invalid_argument) on invalid UTF-8.
  [[nodiscard]] std::vector<int32_t> encode(std::string_view text) const;
  // Words split as the tokenizer sees them (after cleaning, lowercasing and punctuation split),
  // each with whether the vocabulary knows it without falling back to [UNK]. For UI highlighting.
  // Covers the whole prompt (no truncation).
  struct Word {
    std::string text;
    bool known = false;
  };
  [[nodiscard]] std::vector<Word> words(std::string_view text) const;

  [[nodiscard]] const std::vector<std::string>& vocab() const { return vocab_; }
  [[nodiscard]] int32_t id(std::string_view token) const;  // -1 if absent

 private:
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int32_t> ids_;
  bool lowercase_;
  int max_positions_;
  size_t max_token_bytes_ = 0;  // longest vocabulary entry: bounds WordPiece candidate lengths
};

}  // namespace strand
