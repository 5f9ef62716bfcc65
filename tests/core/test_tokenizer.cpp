// WordPiece tokenizer: parity with the Python reference (tests/data/tokenizer_cases.json, written
// by training/make_tokenizer_cases.py), plus C++-only contracts (UTF-8 validation, long prompts,
// constructor errors).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "strand/error.h"
#include "strand/tokenizer.h"

namespace {

using strand::ErrorKind;
using strand::WordPieceTokenizer;

const nlohmann::json& parity_data() {
  static const nlohmann::json data = [] {
    std::ifstream in(STRAND_TEST_DATA "/tokenizer_cases.json", std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " STRAND_TEST_DATA "/tokenizer_cases.json");
    std::stringstream buffer;
    buffer << in.rdbuf();
    return nlohmann::json::parse(buffer.str());
  }();
  return data;
}

std::vector<std::string> parity_vocab() {
  return parity_data().at("vocab").get<std::vector<std::string>>();
}

// Printable form of a prompt for failure messages (control bytes and non-ASCII escaped).
std::string escaped(const std::string& text, size_t limit = 160) {
  std::string out;
  static const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte < 0x7F) {
      out.push_back(static_cast<char>(byte));
    } else {
      out += "\\x";
      out.push_back(hex[byte >> 4]);
      out.push_back(hex[byte & 15]);
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

std::string bytes_from_hex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

std::vector<std::string> small_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]",     "[SEP]", "sun", "##set", "##rise", "over",
          "the",   "lake",  "mountains", "!",     ",",   ".",     "creme",  "brulee",
          "a",     "##a",   "中",        "ω",     "σ",   "ø"};
}

// Ids of `tokens` in `tok`, each of which must exist: expectations written as token strings.
std::vector<int32_t> ids_of(const WordPieceTokenizer& tok, const std::vector<std::string>& tokens) {
  std::vector<int32_t> ids;
  for (const auto& token : tokens) {
    ids.push_back(tok.id(token));
    EXPECT_GE(ids.back(), 0) << "token not in test vocabulary: " << token;
  }
  return ids;
}

TEST(TokenizerParity, IdsAndWordsMatchPythonReference) {
  const auto& data = parity_data();
  const std::vector<std::string> vocab = parity_vocab();
  const bool default_lowercase = data.at("lowercase").get<bool>();
  const int default_max_positions = data.at("max_positions").get<int>();
  std::map<std::pair<bool, int>, std::unique_ptr<WordPieceTokenizer>> tokenizers;

  const auto& cases = data.at("cases");
  ASSERT_GT(cases.size(), 100u);
  int failures = 0;
  for (size_t index = 0; index < cases.size(); ++index) {
    const auto& test_case = cases[index];
    const bool lowercase = test_case.value("lowercase", default_lowercase);
    const int max_positions = test_case.value("max_positions", default_max_positions);
    auto& tok = tokenizers[{lowercase, max_positions}];
    if (!tok) tok = std::make_unique<WordPieceTokenizer>(vocab, lowercase, max_positions);

    const auto text = test_case.at("text").get<std::string>();
    const auto expected_ids = test_case.at("ids").get<std::vector<int32_t>>();
    const auto ids = tok->encode(text);
    bool same = ids == expected_ids;

    const auto& expected_words = test_case.at("words");
    const auto words = tok->words(text);
    std::string word_mismatch;
    if (words.size() != expected_words.size()) {
      word_mismatch = "word count " + std::to_string(words.size()) + " vs " +
                      std::to_string(expected_words.size());
    } else {
      for (size_t w = 0; w < words.size() && word_mismatch.empty(); ++w) {
        const auto expected_text = expected_words[w].at(0).get<std::string>();
        const bool expected_known = expected_words[w].at(1).get<bool>();
        if (words[w].text != expected_text || words[w].known != expected_known) {
          word_mismatch = "word " + std::to_string(w) + ": '" + escaped(words[w].text) + "' " +
                          (words[w].known ? "known" : "unknown") + " vs '" +
                          escaped(expected_text) + "' " + (expected_known ? "known" : "unknown");
        }
      }
    }
    same = same && word_mismatch.empty();
    if (!same && ++failures <= 10) {
      ADD_FAILURE() << "case " << index << " (lowercase=" << lowercase
                    << ", max_positions=" << max_positions << "): '" << escaped(text) << "'\n"
                    << (ids == expected_ids ? "ids match" : "ids differ") << "; "
                    << (word_mismatch.empty() ? "words match" : word_mismatch);
    }
  }
  EXPECT_EQ(failures, 0) << "of " << cases.size() << " cases";
}

TEST(TokenizerParity, Utf8ValidityMatchesPythonDecoder) {
  const auto& cases = parity_data().at("utf8_cases");
  ASSERT_GT(cases.size(), 50u);
  const WordPieceTokenizer tok(parity_vocab(), true, 16);
  for (const auto& test_case : cases) {
    const auto hex = test_case.at("hex").get<std::string>();
    const bool valid = test_case.at("valid").get<bool>();
    const std::string bytes = bytes_from_hex(hex);
    EXPECT_EQ(strand::is_valid_utf8(bytes), valid) << "bytes " << hex;
    if (valid) {
      EXPECT_NO_THROW((void)tok.encode(bytes)) << "bytes " << hex;
    } else {
      try {
        (void)tok.encode(bytes);
        ADD_FAILURE() << "encode accepted invalid UTF-8 " << hex;
      } catch (const strand::Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
      }
      EXPECT_THROW((void)tok.words(bytes), strand::Error) << "bytes " << hex;
    }
  }
}

// Independent reference: decode by the bit layout alone, then require the shortest encoding of
// the value, no surrogate and at most U+10FFFF (the definition, not the byte-range table the
// engine uses).
bool reference_valid_utf8(const unsigned char* bytes, size_t size) {
  size_t i = 0;
  while (i < size) {
    const unsigned lead = bytes[i];
    size_t length = 0;
    unsigned value = 0;
    if (lead < 0x80) {
      length = 1;
      value = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2;
      value = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      value = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      value = lead & 0x07;
    } else {
      return false;
    }
    if (i + length > size) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((bytes[i + k] & 0xC0) != 0x80) return false;
      value = (value << 6) | (bytes[i + k] & 0x3Fu);
    }
    const size_t shortest = value < 0x80 ? 1 : value < 0x800 ? 2 : value < 0x10000 ? 3 : 4;
    if (shortest != length) return false;
    if (value >= 0xD800 && value <= 0xDFFF) return false;
    if (value > 0x10FFFF) return false;
    i += length;
  }
  return true;
}

TEST(TokenizerUtf8, AllSequencesUpToThreeBytesMatchReference) {
  unsigned char buffer[3];
  int mismatches = 0;
  for (unsigned value = 0; value < (1u << 24); ++value) {
    for (size_t length = 1; length <= 3; ++length) {
      // Enumerate every 1-, 2- and 3-byte string exactly once: length L uses the low 8L bits.
      if (length < 3 && value >= (1u << (8 * length))) continue;
      for (size_t k = 0; k < length; ++k) buffer[k] = static_cast<unsigned char>(value >> (8 * k));
      const std::string_view text(reinterpret_cast<const char*>(buffer), length);
      if (strand::is_valid_utf8(text) != reference_valid_utf8(buffer, length)) {
        if (++mismatches <= 5) ADD_FAILURE() << "mismatch for " << escaped(std::string(text));
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(TokenizerUtf8, FourByteSequencesMatchReference) {
  const unsigned char interesting[] = {0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0x9F, 0xA0,
                                       0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xFF};
  unsigned char buffer[5] = {0x41, 0, 0, 0, 0};
  for (unsigned lead = 0xE0; lead <= 0xFF; ++lead) {
    for (unsigned char b1 : interesting) {
      for (unsigned char b2 : interesting) {
        for (unsigned char b3 : interesting) {
          buffer[1] = static_cast<unsigned char>(lead);
          buffer[2] = b1;
          buffer[3] = b2;
          buffer[4] = b3;
          const std::string_view text(reinterpret_cast<const char*>(buffer), 5);
          ASSERT_EQ(strand::is_valid_utf8(text), reference_valid_utf8(buffer, 5))
              << escaped(std::string(text));
        }
      }
    }
  }
}

TEST(TokenizerUtf8, NamedCases) {
  EXPECT_TRUE(strand::is_valid_utf8(""));
  EXPECT_TRUE(strand::is_valid_utf8("plain ascii text, longer than eight bytes"));
  EXPECT_TRUE(strand::is_valid_utf8("\xF4\x8F\xBF\xBF"));           // U+10FFFF
  EXPECT_FALSE(strand::is_valid_utf8("\xF4\x90\x80\x80"));          // U+110000
  EXPECT_FALSE(strand::is_valid_utf8("\xC0\xAF"));                  // overlong '/'
  EXPECT_FALSE(strand::is_valid_utf8("\xE0\x80\xAF"));              // overlong '/'
  EXPECT_FALSE(strand::is_valid_utf8("\xF0\x80\x80\xAF"));          // overlong '/'
  EXPECT_FALSE(strand::is_valid_utf8("\xED\xA0\x80"));              // U+D800
  EXPECT_FALSE(strand::is_valid_utf8("\xED\xBF\xBF"));              // U+DFFF
  EXPECT_FALSE(strand::is_valid_utf8("abcdefgh\xE2\x82"));          // truncated after fast path
  EXPECT_FALSE(strand::is_valid_utf8("\x80"));                      // lone continuation
  EXPECT_TRUE(strand::is_valid_utf8(std::string_view("a\0b", 3)));  // NUL is valid UTF-8
}

TEST(TokenizerLongPrompt, MegabytePromptIsFastAndTruncated) {
  const WordPieceTokenizer tok(small_vocab(), true, 64);
  std::string prompt;
  while (prompt.size() < (1u << 20)) prompt += "Sunset over the lake, mountains! ";
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok.encode(prompt);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(ids.size(), 64u);
  EXPECT_EQ(ids.front(), tok.id("[CLS]"));
  EXPECT_EQ(ids.back(), tok.id("[SEP]"));
  // One repetition is 8 pieces: sun ##set over the lake , mountains !
  const auto period = ids_of(tok, {"sun", "##set", "over", "the", "lake", ",", "mountains", "!"});
  for (size_t i = 1; i + 1 < ids.size(); ++i) EXPECT_EQ(ids[i], period[(i - 1) % 8]) << i;
  // Validation of 1 MB plus 62 pieces: milliseconds; the bound leaves room for slow builders.
  EXPECT_LT(std::chrono::duration<double>(elapsed).count(), 0.5);
}

TEST(TokenizerLongPrompt, EncodeStopsOnceTruncated) {
  // Worst case for WordPiece: 100-character words matched one character at a time, with a
  // 400-byte token that makes every position try ~100 candidates. Tokenizing all of 1 MB this way
  // takes seconds; encode() must stop after the first word fills max_positions.
  std::vector<std::string> vocab = small_vocab();
  vocab.push_back(std::string(400, 'z'));
  const WordPieceTokenizer tok(vocab, true, 64);
  const std::string word(100, 'a');
  std::string prompt;
  while (prompt.size() < (1u << 20)) prompt += word + " ";
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok.encode(prompt);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(ids.size(), 64u);
  EXPECT_EQ(ids[1], tok.id("a"));
  EXPECT_EQ(ids[62], tok.id("##a"));
  EXPECT_LT(std::chrono::duration<double>(elapsed).count(), 0.5);
}

TEST(TokenizerLongPrompt, WholeInputIsValidatedEvenPastTruncation) {
  const WordPieceTokenizer tok(small_vocab(), true, 8);
  std::string prompt(1u << 20, 'a');
  prompt[100] = ' ';
  prompt.back() = '\xFF';
  EXPECT_THROW((void)tok.encode(prompt), strand::Error);
}

TEST(TokenizerLongPrompt, MegabyteWordIsUnknownAndWordsCoversEverything) {
  const WordPieceTokenizer tok(small_vocab(), true, 16);
  const std::string huge_word(1u << 20, 'a');
  EXPECT_EQ(tok.encode(huge_word), ids_of(tok, {"[CLS]", "[UNK]", "[SEP]"}));
  std::string prompt;
  while (prompt.size() < (1u << 20)) prompt += "sunrise over the lake. ";
  const auto start = std::chrono::steady_clock::now();
  const auto words = tok.words(prompt);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const size_t repetitions = prompt.size() / std::string("sunrise over the lake. ").size();
  ASSERT_EQ(words.size(), repetitions * 5);  // words() is not truncated
  EXPECT_EQ(words.back().text, ".");
  EXPECT_LT(std::chrono::duration<double>(elapsed).count(), 3.0);
}

TEST(TokenizerEncode, HandWrittenExpectations) {
  const WordPieceTokenizer tok(small_vocab(), true, 32);
  EXPECT_EQ(tok.encode(""), ids_of(tok, {"[CLS]", "[SEP]"}));
  EXPECT_EQ(tok.encode(" \t\n\u3000\u00a0"), ids_of(tok, {"[CLS]", "[SEP]"}));
  EXPECT_EQ(tok.encode("SUNSET over the\tlake!"),
            ids_of(tok, {"[CLS]", "sun", "##set", "over", "the", "lake", "!", "[SEP]"}));
  // Accents stripped by the Latin table, punctuation split off, unknown word -> [UNK].
  EXPECT_EQ(tok.encode("Crème BRÛLÉE, sunrisex."),
            ids_of(tok, {"[CLS]", "creme", "brulee", ",", "[UNK]", ".", "[SEP]"}));
  // Zero-width space and soft hyphen are dropped (joining the halves); U+2014 is punctuation.
  EXPECT_EQ(tok.encode("sun\u200bset\u2014la\u00adke"),
            ids_of(tok, {"[CLS]", "sun", "##set", "[UNK]", "lake", "[SEP]"}));
  // CJK ideographs split one per word; Greek capital omega lowercases, final sigma is per-char.
  EXPECT_EQ(tok.encode("中中 Ω Σ Ø"), ids_of(tok, {"[CLS]", "中", "中", "ω", "σ", "ø", "[SEP]"}));
  // 100 code points is the longest word WordPiece tries; 101 is [UNK].
  const auto hundred = tok.encode(std::string(100, 'a'));
  ASSERT_EQ(hundred.size(), 32u);
  EXPECT_EQ(hundred[1], tok.id("a"));
  EXPECT_EQ(hundred[2], tok.id("##a"));
  EXPECT_EQ(tok.encode(std::string(101, 'a')), ids_of(tok, {"[CLS]", "[UNK]", "[SEP]"}));
}

TEST(TokenizerEncode, TruncationKeepsSepLast) {
  for (int max_positions : {2, 3, 4, 7}) {
    const WordPieceTokenizer tok(small_vocab(), true, max_positions);
    const auto ids = tok.encode("sunset over the lake sunrise over the mountains");
    const std::vector<std::string> all = {"sun", "##set",  "over", "the", "lake",
                                          "sun", "##rise", "over", "the", "mountains"};
    std::vector<std::string> expected = {"[CLS]"};
    for (int i = 0; i < max_positions - 2; ++i) expected.push_back(all[static_cast<size_t>(i)]);
    expected.push_back("[SEP]");
    EXPECT_EQ(ids, ids_of(tok, expected)) << "max_positions " << max_positions;
  }
}

TEST(TokenizerEncode, CasedKeepsCaseAndAccents) {
  std::vector<std::string> vocab = small_vocab();
  vocab.push_back("Sun");
  vocab.push_back("é");
  const WordPieceTokenizer tok(vocab, false, 32);
  EXPECT_EQ(tok.encode("Sunset é É"),
            ids_of(tok, {"[CLS]", "Sun", "##set", "é", "[UNK]", "[SEP]"}));
}

TEST(TokenizerWords, FlagsAndSplitting) {
  const WordPieceTokenizer tok(small_vocab(), true, 8);
  const auto words = tok.words("Sunset over Ωmega-lake!! 中x");
  const std::vector<std::pair<std::string, bool>> expected = {
      {"sunset", true}, {"over", true}, {"ωmega", false}, {"-", false}, {"lake", true},
      {"!", true},      {"!", true},    {"中", true},     {"x", false}};
  ASSERT_EQ(words.size(), expected.size());
  for (size_t i = 0; i < words.size(); ++i) {
    EXPECT_EQ(words[i].text, expected[i].first) << i;
    EXPECT_EQ(words[i].known, expected[i].second) << i;
  }
  EXPECT_TRUE(tok.words("").empty());
  EXPECT_TRUE(tok.words("\u200b \t").empty());
}

TEST(TokenizerVocab, IdLookup) {
  const WordPieceTokenizer tok(small_vocab(), true, 8);
  EXPECT_EQ(tok.id("[PAD]"), 0);
  EXPECT_EQ(tok.id("##set"), 5);
  EXPECT_EQ(tok.id("set"), -1);
  EXPECT_EQ(tok.id(""), -1);
  EXPECT_EQ(tok.vocab(), small_vocab());
}

void expect_constructor_error(std::vector<std::string> vocab, int max_positions, ErrorKind kind,
                              const std::string& what) {
  try {
    const WordPieceTokenizer tok(std::move(vocab), true, max_positions);
    ADD_FAILURE() << "accepted: " << what;
  } catch (const strand::Error& e) {
    EXPECT_EQ(e.kind(), kind) << what << ": " << e.what();
  }
}

TEST(TokenizerVocab, ConstructorErrors) {
  for (const char* special : {"[PAD]", "[UNK]", "[CLS]", "[SEP]"}) {
    std::vector<std::string> vocab = small_vocab();
    std::erase(vocab, std::string(special));
    expect_constructor_error(vocab, 8, ErrorKind::invalid_file, std::string("missing ") + special);
  }
  std::vector<std::string> repeated = small_vocab();
  repeated.push_back("lake");
  expect_constructor_error(repeated, 8, ErrorKind::invalid_file, "repeated token");
  std::vector<std::string> empty_token = small_vocab();
  empty_token.push_back("");
  expect_constructor_error(empty_token, 8, ErrorKind::invalid_file, "empty token");
  std::vector<std::string> bad_utf8 = small_vocab();
  bad_utf8.push_back("\xC3");
  expect_constructor_error(bad_utf8, 8, ErrorKind::invalid_file, "invalid UTF-8 token");
  expect_constructor_error({}, 8, ErrorKind::invalid_file, "empty vocabulary");
  expect_constructor_error(small_vocab(), 1, ErrorKind::invalid_argument, "max_positions 1");
  expect_constructor_error(small_vocab(), -5, ErrorKind::invalid_argument,
                           "negative max_positions");
  EXPECT_NO_THROW(WordPieceTokenizer(small_vocab(), true, 2));
}

}  // namespace
