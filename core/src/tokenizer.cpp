// BERT WordPiece tokenizer, docs/model-spec.md section 2.
//
// Unicode coverage. The spec lets the engine cover a subset of Unicode; this file covers exactly
// the following, and training/strand_ref/tokenizer.py implements the same subset (the parity data
// tests/data/tokenizer_cases.json walks every code point of the classified blocks below):
//
// * Character classes are recognised only inside these "classified blocks": U+0000..U+052F (Basic
//   Latin to Cyrillic Supplement), U+1680..U+169F (Ogham), U+2000..U+206F (General Punctuation),
//   U+2E00..U+2E7F (Supplemental Punctuation), U+3000..U+303F (CJK Symbols and Punctuation),
//   U+FE10..U+FE1F (Vertical Forms), U+FE30..U+FE6F (CJK Compatibility Forms, Small Form
//   Variants), U+FEFF, U+FF00..U+FFFF (Halfwidth and Fullwidth Forms, Specials) and
//   U+E0000..U+E007F (Tags). Inside them, as of Unicode 14:
//   - dropped: U+0000, U+FFFD, every Cc except tab / LF / CR, and every Cf (soft hyphen, zero-width
//     space/joiners, bidi controls, word joiner, invisible operators, BOM, interlinear annotation,
//     tag characters);
//   - whitespace: tab, LF, CR and every Zs (all Zs of Unicode lie in these blocks);
//   - punctuation: ASCII 33-47, 58-64, 91-96, 123-126 (as the spec says, this includes ASCII
//     symbols such as $ + < = > ^ ` | ~) and every P* character.
//   Outside these blocks every character is ordinary (kept inside its word), e.g. Arabic Cf
//   U+0600..U+0605, Armenian or Hebrew punctuation, U+2028 (Zl) and U+2029 (Zp), emoji.
// * CJK ideographs U+4E00..U+9FFF, U+3400..U+4DBF, U+F900..U+FAFF, U+20000..U+2A6DF are split
//   into single characters (exactly the spec's ranges).
// * Lowercasing (when enabled) is the simple, per-character lowercase mapping (no final-sigma
//   rule) for ASCII, U+00C0..U+017F, Greek U+0370..U+03FF and Cyrillic U+0400..U+052F. Other
//   scripts (Latin Extended-B and later, Armenian, Georgian, ...) are kept as they are.
// * Accent stripping (when lowercasing): precomposed letters U+00C0..U+017F become their NFD base
//   letter (a table; letters without a canonical decomposition such as æ ð ø þ ß đ ħ ı ĳ ŀ ł ŋ œ
//   ŧ ſ stay), and combining diacritical marks U+0300..U+036F are dropped. Other precomposed
//   letters (e.g. Greek with tonos, Latin Extended Additional) keep their accents.

#include "strand/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <utility>

#include "strand/error.h"

namespace strand {
namespace {

constexpr int kMaxWordCodePoints = 100;  // longer words are [UNK] (spec step 5)
constexpr char32_t kNoChar = 0xFFFFFFFF;

struct CodeRange {
  char32_t first;
  char32_t last;  // inclusive
};

// Tables read best as written.
// clang-format off
// Sorted, non-overlapping. Non-ASCII members only where the ASCII rule is handled separately.
constexpr std::array kDroppedRanges = std::to_array<CodeRange>({
    {0x0000, 0x0008}, {0x000B, 0x000C}, {0x000E, 0x001F}, {0x007F, 0x009F}, {0x00AD, 0x00AD},
    {0x200B, 0x200F}, {0x202A, 0x202E}, {0x2060, 0x2064}, {0x2066, 0x206F}, {0xFEFF, 0xFEFF},
    {0xFFF9, 0xFFFB}, {0xFFFD, 0xFFFD}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F},
});

constexpr std::array kWhitespaceRanges = std::to_array<CodeRange>({
    {0x0009, 0x000A}, {0x000D, 0x000D}, {0x0020, 0x0020}, {0x00A0, 0x00A0}, {0x1680, 0x1680},
    {0x2000, 0x200A}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
});

// Unicode P* in the classified blocks, above ASCII.
constexpr std::array kPunctuationRanges = std::to_array<CodeRange>({
    {0x00A1, 0x00A1}, {0x00A7, 0x00A7}, {0x00AB, 0x00AB}, {0x00B6, 0x00B7}, {0x00BB, 0x00BB},
    {0x00BF, 0x00BF}, {0x037E, 0x037E}, {0x0387, 0x0387}, {0x169B, 0x169C}, {0x2010, 0x2027},
    {0x2030, 0x2043}, {0x2045, 0x2051}, {0x2053, 0x205E}, {0x2E00, 0x2E2E}, {0x2E30, 0x2E4F},
    {0x2E52, 0x2E5D}, {0x3001, 0x3003}, {0x3008, 0x3011}, {0x3014, 0x301F}, {0x3030, 0x3030},
    {0x303D, 0x303D}, {0xFE10, 0xFE19}, {0xFE30, 0xFE52}, {0xFE54, 0xFE61}, {0xFE63, 0xFE63},
    {0xFE68, 0xFE68}, {0xFE6A, 0xFE6B}, {0xFF01, 0xFF03}, {0xFF05, 0xFF0A}, {0xFF0C, 0xFF0F},
    {0xFF1A, 0xFF1B}, {0xFF1F, 0xFF20}, {0xFF3B, 0xFF3D}, {0xFF3F, 0xFF3F}, {0xFF5B, 0xFF5B},
    {0xFF5D, 0xFF5D}, {0xFF5F, 0xFF65},
});

constexpr std::array kCjkRanges = std::to_array<CodeRange>({
    {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xF900, 0xFAFF}, {0x20000, 0x2A6DF},
});

// Lowercased (and, by the caller, accent-stripped) base letter of U+00C0 + i, or '.' when the
// letter has no canonical decomposition (then the plain lowercase mapping applies). Rows of 16.
constexpr std::string_view kLatinBaseLetters =
    "aaaaaa.ceeeeiiii"   // U+00C0 À Á Â Ã Ä Å Æ Ç È É Ê Ë Ì Í Î Ï
    ".nooooo..uuuuy.."   // U+00D0 Ð Ñ Ò Ó Ô Õ Ö × Ø Ù Ú Û Ü Ý Þ ß
    "aaaaaa.ceeeeiiii"   // U+00E0 à á â ã ä å æ ç è é ê ë ì í î ï
    ".nooooo..uuuuy.y"   // U+00F0 ð ñ ò ó ô õ ö ÷ ø ù ú û ü ý þ ÿ
    "aaaaaaccccccccdd"   // U+0100 Ā ā Ă ă Ą ą Ć ć Ĉ ĉ Ċ ċ Č č Ď ď
    "..eeeeeeeeeegggg"   // U+0110 Đ đ Ē ē Ĕ ĕ Ė ė Ę ę Ě ě Ĝ ĝ Ğ ğ
    "gggghh..iiiiiiii"   // U+0120 Ġ ġ Ģ ģ Ĥ ĥ Ħ ħ Ĩ ĩ Ī ī Ĭ ĭ Į į
    "i...jjkk.llllll."   // U+0130 İ ı Ĳ ĳ Ĵ ĵ Ķ ķ ĸ Ĺ ĺ Ļ ļ Ľ ľ Ŀ
    "...nnnnnn...oooo"   // U+0140 ŀ Ł ł Ń ń Ņ ņ Ň ň ŉ Ŋ ŋ Ō ō Ŏ ŏ
    "oo..rrrrrrssssss"   // U+0150 Ő ő Œ œ Ŕ ŕ Ŗ ŗ Ř ř Ś ś Ŝ ŝ Ş ş
    "sstttt..uuuuuuuu"   // U+0160 Š š Ţ ţ Ť ť Ŧ ŧ Ũ ũ Ū ū Ŭ ŭ Ů ů
    "uuuuwwyyyzzzzzz.";  // U+0170 Ű ű Ų ų Ŵ ŵ Ŷ ŷ Ÿ Ź ź Ż ż Ž ž ſ
// clang-format on
static_assert(kLatinBaseLetters.size() == 0x180 - 0xC0);

bool in_ranges(std::span<const CodeRange> ranges, char32_t cp) {
  // First range whose last >= cp; cp is inside it when first <= cp.
  const auto it = std::ranges::lower_bound(ranges, cp, {}, &CodeRange::last);
  return it != ranges.end() && it->first <= cp;
}

bool is_ascii_punctuation(char32_t cp) {
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
         (cp >= 123 && cp <= 126);
}

bool is_dropped(char32_t cp) {
  return in_ranges(kDroppedRanges, cp);
}
bool is_whitespace(char32_t cp) {
  return in_ranges(kWhitespaceRanges, cp);
}
bool is_split_alone(char32_t cp) {
  if (cp < 0x80) return is_ascii_punctuation(cp);
  return in_ranges(kPunctuationRanges, cp) || in_ranges(kCjkRanges, cp);
}

// Simple lowercase mapping for the covered scripts (see the file comment); identity elsewhere.
char32_t simple_lowercase(char32_t cp) {
  const bool even = cp % 2 == 0;
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  if (cp < 0xC0) return cp;
  // Latin-1 Supplement and Latin Extended-A.
  if (cp <= 0xDE) return cp == 0xD7 ? cp : cp + 32;  // U+00D7 is the multiplication sign
  if (cp < 0x100) return cp;
  if (cp == 0x130) return 'i';   // İ: simple mapping drops the dot
  if (cp == 0x178) return 0xFF;  // Ÿ -> ÿ
  if (cp <= 0x137) return (even && cp != 0x130) ? cp + 1 : cp;
  if (cp <= 0x148) return (!even && cp >= 0x139) ? cp + 1 : cp;
  if (cp <= 0x177) return (even && cp >= 0x14A) ? cp + 1 : cp;
  if (cp <= 0x17E) return (!even && cp >= 0x179) ? cp + 1 : cp;
  if (cp < 0x370) return cp;
  // Greek and Coptic.
  if (cp <= 0x373) return even ? cp + 1 : cp;
  if (cp == 0x376) return 0x377;
  if (cp == 0x37F) return 0x3F3;
  if (cp == 0x386) return 0x3AC;
  if (cp >= 0x388 && cp <= 0x38A) return cp + 37;
  if (cp == 0x38C) return 0x3CC;
  if (cp >= 0x38E && cp <= 0x38F) return cp + 63;
  if ((cp >= 0x391 && cp <= 0x3A1) || (cp >= 0x3A3 && cp <= 0x3AB)) return cp + 32;
  if (cp == 0x3CF) return 0x3D7;
  if (cp >= 0x3D8 && cp <= 0x3EF) return even ? cp + 1 : cp;
  if (cp == 0x3F4) return 0x3B8;
  if (cp == 0x3F7 || cp == 0x3FA) return cp + 1;
  if (cp == 0x3F9) return 0x3F2;
  if (cp >= 0x3FD && cp <= 0x3FF) return cp - 130;
  if (cp < 0x400) return cp;
  // Cyrillic and Cyrillic Supplement.
  if (cp <= 0x40F) return cp + 80;
  if (cp <= 0x42F) return cp + 32;
  if (cp >= 0x460 && cp <= 0x481) return even ? cp + 1 : cp;
  if (cp >= 0x48A && cp <= 0x4BF) return even ? cp + 1 : cp;
  if (cp == 0x4C0) return 0x4CF;
  if (cp >= 0x4C1 && cp <= 0x4CE) return even ? cp : cp + 1;
  if (cp >= 0x4D0 && cp <= 0x52F) return even ? cp + 1 : cp;
  return cp;
}

// Spec step 3 for one code point: lowercase and strip accents; kNoChar when it disappears.
char32_t fold_case_and_accents(char32_t cp) {
  if (cp >= 0x300 && cp <= 0x36F) return kNoChar;  // combining diacritical marks (Mn)
  const char32_t lower = simple_lowercase(cp);
  if (lower >= 0xC0 && lower < 0x180) {
    const char base = kLatinBaseLetters[lower - 0xC0];
    if (base != '.') return static_cast<char32_t>(base);
  }
  return lower;
}

// Decodes the code point at text[pos] and advances pos. `text` must be valid UTF-8.
char32_t next_code_point(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) {
    return static_cast<char32_t>(static_cast<unsigned char>(text[i]));
  };
  const char32_t b0 = byte(pos);
  if (b0 < 0x80) {
    pos += 1;
    return b0;
  }
  if (b0 < 0xE0) {
    const char32_t cp = ((b0 & 0x1F) << 6) | (byte(pos + 1) & 0x3F);
    pos += 2;
    return cp;
  }
  if (b0 < 0xF0) {
    const char32_t cp =
        ((b0 & 0x0F) << 12) | ((byte(pos + 1) & 0x3F) << 6) | (byte(pos + 2) & 0x3F);
    pos += 3;
    return cp;
  }
  const char32_t cp = ((b0 & 0x07) << 18) | ((byte(pos + 1) & 0x3F) << 12) |
                      ((byte(pos + 2) & 0x3F) << 6) | (byte(pos + 3) & 0x3F);
  pos += 4;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  const auto put = [&](char32_t bits) { out.push_back(static_cast<char>(bits)); };
  if (cp < 0x80) {
    put(cp);
  } else if (cp < 0x800) {
    put(0xC0 | (cp >> 6));
    put(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    put(0xE0 | (cp >> 12));
    put(0x80 | ((cp >> 6) & 0x3F));
    put(0x80 | (cp & 0x3F));
  } else {
    put(0xF0 | (cp >> 18));
    put(0x80 | ((cp >> 12) & 0x3F));
    put(0x80 | ((cp >> 6) & 0x3F));
    put(0x80 | (cp & 0x3F));
  }
}

// Spec steps 2-4 over valid UTF-8 `text`: calls on_word(word, code_points) for each word in
// order, and stops as soon as on_word returns false (so truncated encodes stay cheap).
template <class OnWord>
void split_words(std::string_view text, bool lowercase, OnWord&& on_word) {
  std::string word;
  int word_code_points = 0;
  const auto flush = [&]() {
    if (word.empty()) return true;
    const bool go_on = on_word(std::string_view(word), word_code_points);
    word.clear();
    word_code_points = 0;
    return go_on;
  };
  size_t pos = 0;
  while (pos < text.size()) {
    char32_t cp = next_code_point(text, pos);
    if (is_dropped(cp)) continue;
    if (is_whitespace(cp)) {
      if (!flush()) return;
      continue;
    }
    if (lowercase) {
      cp = fold_case_and_accents(cp);
      if (cp == kNoChar) continue;
    }
    if (is_split_alone(cp)) {
      if (!flush()) return;
      std::string single;
      append_utf8(single, cp);
      if (!on_word(std::string_view(single), 1)) return;
      continue;
    }
    append_utf8(word, cp);
    // Saturate: past the limit the word is [UNK] whatever its length.
    word_code_points = std::min(word_code_points + 1, kMaxWordCodePoints + 1);
  }
  flush();
}

bool is_continuation_byte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// Spec step 5: appends the WordPiece ids of `word` to `out` and returns true, or returns false
// (appending nothing) when the word is [UNK]. `scratch` is reused to avoid an allocation per
// lookup; candidate pieces are never longer than `max_token_bytes`.
bool append_wordpiece(const std::unordered_map<std::string, int32_t>& ids, std::string_view word,
                      int code_points, size_t max_token_bytes, std::string& scratch,
                      std::vector<int32_t>* out) {
  if (code_points > kMaxWordCodePoints) return false;
  const size_t first_piece = out != nullptr ? out->size() : 0;
  size_t start = 0;
  while (start < word.size()) {
    const std::string_view prefix = start > 0 ? "##" : "";
    size_t end = std::min(word.size(), start + max_token_bytes);
    int32_t found = -1;
    for (; end > start; --end) {
      if (end < word.size() && is_continuation_byte(word[end])) continue;  // not a boundary
      scratch.assign(prefix);
      scratch.append(word.substr(start, end - start));
      if (const auto it = ids.find(scratch); it != ids.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {
      if (out != nullptr) out->resize(first_piece);
      return false;
    }
    if (out != nullptr) out->push_back(found);
    start = end;
  }
  return true;
}

size_t longest_token_bytes(const std::vector<std::string>& vocab) {
  size_t longest = 0;
  for (const auto& token : vocab) longest = std::max(longest, token.size());
  return longest;
}

}  // namespace

bool is_valid_utf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  size_t i = 0;
  while (i < size) {
    // Fast path: eight ASCII bytes at a time (prompts are mostly ASCII).
    if (i + 8 <= size) {
      uint64_t chunk = 0;
      std::memcpy(&chunk, bytes + i, 8);
      if ((chunk & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char b0 = bytes[i];
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    // Valid range of the second byte depends on the lead byte; this excludes overlongs
    // (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..).
    size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      length = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      length = 3;
      if (b0 == 0xE0) second_min = 0xA0;
      if (b0 == 0xED) second_max = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      length = 4;
      if (b0 == 0xF0) second_min = 0x90;
      if (b0 == 0xF4) second_max = 0x8F;
    } else {
      return false;  // stray continuation byte, C0/C1 overlong lead, or F5..FF
    }
    if (size - i < length) return false;  // truncated sequence
    if (bytes[i + 1] < second_min || bytes[i + 1] > second_max) return false;
    for (size_t k = 2; k < length; ++k) {
      if ((bytes[i + k] & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

WordPieceTokenizer::WordPieceTokenizer(std::vector<std::string> vocab, bool lowercase,
                                       int max_positions)
    : vocab_(std::move(vocab)), lowercase_(lowercase), max_positions_(max_positions) {
  if (max_positions_ < 2) {
    throw Error(ErrorKind::invalid_argument,
                "tokenizer: max_positions must be at least 2 (room for [CLS] and [SEP]), got " +
                    std::to_string(max_positions_));
  }
  ids_.reserve(vocab_.size());
  for (size_t index = 0; index < vocab_.size(); ++index) {
    const std::string& token = vocab_[index];
    // An empty token can never match; it means a corrupt vocabulary (e.g. a blank line).
    if (token.empty()) {
      throw Error(ErrorKind::invalid_file,
                  "tokenizer: vocabulary token " + std::to_string(index) + " is empty");
    }
    if (!is_valid_utf8(token)) {
      throw Error(ErrorKind::invalid_file,
                  "tokenizer: vocabulary token " + std::to_string(index) + " is not valid UTF-8");
    }
    const auto [it, inserted] = ids_.emplace(token, static_cast<int32_t>(index));
    if (!inserted) {
      throw Error(ErrorKind::invalid_file, "tokenizer: vocabulary token '" + token +
                                               "' repeats (ids " + std::to_string(it->second) +
                                               " and " + std::to_string(index) + ")");
    }
  }
  for (const char* special : {"[PAD]", "[UNK]", "[CLS]", "[SEP]"}) {
    if (!ids_.contains(special)) {
      throw Error(ErrorKind::invalid_file, std::string("tokenizer: vocabulary lacks ") + special);
    }
  }
  max_token_bytes_ = longest_token_bytes(vocab_);
}

int32_t WordPieceTokenizer::id(std::string_view token) const {
  const auto it = ids_.find(std::string(token));
  return it == ids_.end() ? -1 : it->second;
}

std::vector<int32_t> WordPieceTokenizer::encode(std::string_view text) const {
  // The whole input is validated even though tokenizing stops at max_positions: a prompt with a
  // broken tail is still a broken prompt.
  if (!is_valid_utf8(text)) {
    throw Error(ErrorKind::invalid_argument, "prompt is not valid UTF-8");
  }
  const size_t piece_budget = static_cast<size_t>(max_positions_) - 2;
  const int32_t unk = id("[UNK]");
  const size_t max_token_bytes = max_token_bytes_;
  std::vector<int32_t> ids{id("[CLS]")};
  std::string scratch;
  split_words(text, lowercase_, [&](std::string_view word, int code_points) {
    if (!append_wordpiece(ids_, word, code_points, max_token_bytes, scratch, &ids)) {
      ids.push_back(unk);
    }
    return ids.size() - 1 < piece_budget;
  });
  ids.resize(std::min(ids.size(), 1 + piece_budget));
  ids.push_back(id("[SEP]"));
  return ids;
}

std::vector<WordPieceTokenizer::Word> WordPieceTokenizer::words(std::string_view text) const {
  // Unlike encode(), not truncated: the UI highlights the whole prompt.
  if (!is_valid_utf8(text)) {
    throw Error(ErrorKind::invalid_argument, "prompt is not valid UTF-8");
  }
  const size_t max_token_bytes = max_token_bytes_;
  std::vector<Word> result;
  std::string scratch;
  split_words(text, lowercase_, [&](std::string_view word, int code_points) {
    const bool known = append_wordpiece(ids_, word, code_points, max_token_bytes, scratch, nullptr);
    result.push_back(Word{std::string(word), known});
    return true;
  });
  return result;
}

}  // namespace strand
