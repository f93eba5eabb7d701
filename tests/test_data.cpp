// Text data: UTF-8, tokenizer, vocabularies and label sets (with file round-trips), character
// features, the ATIS / CoNLL / TSV readers (small files in a temporary folder; the real data
// sets when /work/shared/data or $MTLM_DATA_DIR is there), and the length-bucketing batcher.
#include <doctest/doctest.h>

#include <mtlm/data/batcher.hpp>
#include <mtlm/data/char_features.hpp>
#include <mtlm/data/readers.hpp>
#include <mtlm/data/tokenizer.hpp>
#include <mtlm/data/utf8.hpp>
#include <mtlm/data/vocab.hpp>
#include <mtlm/metrics/span_f1.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace mtlm;
namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

namespace {

/// A fresh folder under the system temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::random_device entropy;
    path_ = fs::temp_directory_path() /
            ("mtlm_test_data_" + std::to_string(entropy()) + std::to_string(entropy()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& content) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }

 private:
  fs::path path_;
};

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Runs `f`, requires a FormatError and returns it (to check the file and line it names).
template <class F>
FormatError format_error(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e;
  }
  FAIL("expected a FormatError");
  return FormatError("", 0, "");
}

}  // namespace

// ---- UTF-8 ---------------------------------------------------------------------------------

TEST_CASE("utf8: well-formed strings decode and re-encode") {
  for (std::string s : {std::string(""), std::string("abc"), std::string("h\xC3\xA9llo"),
                        std::string("\xE6\x97\xA5\xE6\x9C\xAC"),  // 日本
                        std::string("\xF0\x9F\x98\x80"),          // U+1F600
                        std::string("\xF4\x8F\xBF\xBF"),          // U+10FFFF
                        std::string("\xED\x9F\xBF"),              // U+D7FF
                        std::string("\xEE\x80\x80"),              // U+E000
                        std::string("\xE0\xA0\x80")}) {           // U+0800
    INFO(s);
    CHECK(utf8::is_valid(s));
    std::string again;
    for (char32_t cp : utf8::codepoints(s)) utf8::append(again, cp);
    CHECK(again == s);
  }
  CHECK(utf8::codepoints("a\xC3\xA9\xF0\x9F\x98\x80") == std::vector<char32_t>{U'a', 0xE9, 0x1F600});
  CHECK(utf8::length("a\xC3\xA9\xF0\x9F\x98\x80") == 3);
  CHECK(utf8::encode(0xD800) == "\xEF\xBF\xBD");  // surrogates cannot be encoded
}

TEST_CASE("utf8: ill-formed input is reported with its byte offset") {
  struct Case {
    std::string text;
    std::size_t offset;
    const char* reason;
  };
  const std::vector<Case> cases{
      {"ab\x80", 2, "unexpected continuation"},
      {"a\xC0\xAF", 1, "overlong"},
      {"\xE0\x80\xAF", 0, "overlong"},
      {"\xF0\x8F\xBF\xBF", 0, "overlong"},
      {"xx\xED\xA0\x80", 2, "surrogate"},
      {"\xF4\x90\x80\x80", 0, "above U+10FFFF"},
      {"\xF5\x80\x80\x80", 0, "invalid lead"},
      {"\xFF", 0, "invalid lead"},
      {"abc\xE2\x82", 3, "truncated"},
      {"\xE2\x28\xA1", 0, "truncated"},
      {"ok \xC3", 3, "truncated"},
  };
  for (const auto& c : cases) {
    INFO(c.reason << " at " << c.offset);
    const auto issue = utf8::find_invalid(c.text);
    REQUIRE(issue.has_value());
    CHECK(issue->offset == c.offset);
    CHECK(issue->reason.find(c.reason) != std::string::npos);
    CHECK(utf8::decode(c.text, c.offset).length == 0);
  }
  const auto e = format_error([] { utf8::validate("ab\xFF", "x.txt", 7); });
  CHECK(e.file() == "x.txt");
  CHECK(e.line() == 7);
  CHECK(std::string(e.what()).find("byte 2") != std::string::npos);
  CHECK(std::string(e.what()).find("0xff") != std::string::npos);
}

TEST_CASE("utf8: to_lower covers Latin, Greek and Cyrillic capitals") {
  CHECK(utf8::to_lower("ABC xyz 123") == "abc xyz 123");
  CHECK(utf8::to_lower("\xC3\x80\xC3\x89\xC3\x9C") == "\xC3\xA0\xC3\xA9\xC3\xBC");  // ÀÉÜ
  CHECK(utf8::to_lower("\xC3\x97\xC3\x9F") == "\xC3\x97\xC3\x9F");  // × and ß unchanged
  CHECK(utf8::to_lower("\xC5\x81\xC5\xB8") == "\xC5\x82\xC3\xBF");  // Ł Ÿ -> ł ÿ
  CHECK(utf8::to_lower("\xCE\x91\xCE\xA9") == "\xCE\xB1\xCF\x89");  // Α Ω -> α ω
  CHECK(utf8::to_lower("\xD0\x94\xD0\x81") == "\xD0\xB4\xD1\x91");  // Д Ё -> д ё
}

// ---- tokenizer -----------------------------------------------------------------------------

TEST_CASE("tokenizer: punctuation is split, word-internal marks are kept") {
  CHECK(tokenize("Hello, world!") == Strings{"Hello", ",", "world", "!"});
  CHECK(tokenize("I don't like o'clock rock\xE2\x80\x99n\xE2\x80\x99roll") ==
        Strings{"I", "don't", "like", "o'clock", "rock\xE2\x80\x99n\xE2\x80\x99roll"});
  CHECK(tokenize("a christmas-tree -- great, covid-19 -x y-") ==
        Strings{"a", "christmas-tree", "--", "great", ",", "covid-19", "-", "x", "y", "-"});
  CHECK(tokenize("costs $3.50, i.e. 1,000 at 10:30...") ==
        Strings{"costs", "$", "3.50", ",", "i", ".", "e", ".", "1,000", "at", "10:30", "..."});
  CHECK(tokenize("(see [1]); \"quoted\"?!") ==
        Strings{"(", "see", "[", "1", "]", ")", ";", "\"", "quoted", "\"", "?", "!"});
}

TEST_CASE("tokenizer: clitics and quotes as in pre-tokenised corpora") {
  CHECK(tokenize("it 's n't 'LL") == Strings{"it", "'s", "n't", "'LL"});
  CHECK(tokenize("'hello' students' books") ==
        Strings{"'", "hello", "'", "students", "'", "books"});
  CHECK(tokenize("'90s 'sup") == Strings{"'", "90s", "'", "sup"});
}

TEST_CASE("tokenizer: Unicode text is split on code points, never inside one") {
  // "Ça coûte 5€ — «cher»", with a no-break space and an ideographic space as separators.
  const std::string text =
      "\xC3\x87" "a\xC2\xA0" "co\xC3\xBB" "te 5\xE2\x82\xAC \xE2\x80\x94 \xC2\xAB" "cher\xC2\xBB"
      "\xE3\x80\x80" "hi\xF0\x9F\x98\x80!";
  const Strings expected{"\xC3\x87" "a", "co\xC3\xBB" "te", "5", "\xE2\x82\xAC", "\xE2\x80\x94",
                         "\xC2\xAB", "cher", "\xC2\xBB", "hi\xF0\x9F\x98\x80", "!"};
  CHECK(tokenize(text) == expected);
  const auto spans = tokenize_spans(text);
  REQUIRE(spans.size() == expected.size());
  for (std::size_t i = 0; i < spans.size(); ++i) {
    CHECK(text.substr(spans[i].begin, spans[i].end - spans[i].begin) == expected[i]);
    CHECK(utf8::is_valid(expected[i]));
  }
  CHECK(tokenize("  \t\n ").empty());
  CHECK(tokenize("").empty());
}

TEST_CASE("tokenizer: options and errors") {
  TokenizerOptions whitespace_only;
  whitespace_only.split_punctuation = false;
  CHECK(tokenize("a,b  c.", whitespace_only) == Strings{"a,b", "c."});
  TokenizerOptions with_abbreviations;
  with_abbreviations.protected_tokens = {"st.", "a.m."};
  CHECK(tokenize("to st. louis at 9 a.m. st.!", with_abbreviations) ==
        Strings{"to", "st.", "louis", "at", "9", "a.m.", "st", ".", "!"});
  const auto e = format_error([] { tokenize("ab\xFF" "cd", {}, "input.txt", 3); });
  CHECK(e.file() == "input.txt");
  CHECK(e.line() == 3);
  CHECK(std::string(e.what()).find("byte 2") != std::string::npos);
}

// ---- vocabularies ---------------------------------------------------------------------------

TEST_CASE("Vocabulary: specials, minimum count, ordering, unknown words") {
  const std::vector<Strings> sentences{
      {"the", "cat", "sat"}, {"the", "dog"}, {"The", "cat"}, {"<unk>", "cat"}};
  VocabOptions options;
  options.min_count = 2;
  const auto v = Vocabulary::build(sentences, options);
  // counts: cat 3, the 2, sat/dog/The 1; "<unk>" in the text is the special itself
  REQUIRE(v.size() == 4);
  CHECK(v.token(Vocabulary::pad_id) == "<pad>");
  CHECK(v.token(Vocabulary::unk_id) == "<unk>");
  CHECK(v.id("cat") == 2);
  CHECK(v.id("the") == 3);
  CHECK(v.count(2) == 3);
  CHECK(v.id("dog") == Vocabulary::unk_id);
  CHECK(v.id("The") == Vocabulary::unk_id);
  CHECK(v.id("<unk>") == Vocabulary::unk_id);
  CHECK(!v.find("dog").has_value());
  CHECK(v.ids(Strings{"the", "cat", "zebra"}) == std::vector<TokenId>{3, 2, 1});
  CHECK(v.special_count() == 2);
  CHECK_THROWS_AS(v.token(4), Error);
  CHECK_THROWS_AS(v.token(-1), Error);

  SUBCASE("ties are broken by byte order, so the data order does not matter") {
    const auto a = Vocabulary::build(std::vector<Strings>{{"b", "a", "c"}});
    const auto b = Vocabulary::build(std::vector<Strings>{{"c", "b", "a"}});
    CHECK(a.tokens() == b.tokens());
    CHECK(a.token(2) == "a");
  }
  SUBCASE("max_size keeps the most frequent tokens") {
    VocabOptions small;
    small.max_size = 1;
    const auto s = Vocabulary::build(sentences, small);
    CHECK(s.size() == 3);
    CHECK(s.token(2) == "cat");
  }
  SUBCASE("add grows the vocabulary and returns existing ids") {
    Vocabulary grow;
    CHECK(grow.size() == 2);
    CHECK(grow.add("x") == 2);
    CHECK(grow.add("y") == 3);
    CHECK(grow.add("x") == 2);
    CHECK_THROWS_AS(grow.add(""), Error);
    CHECK_THROWS_AS(grow.add("a\nb"), Error);
  }
}

TEST_CASE("Vocabulary: normalisation and extra specials") {
  VocabOptions options;
  options.normalizer.lowercase = true;
  options.normalizer.digits_to_zero = true;
  options.extra_specials = {"<bos>", "<eos>"};
  const auto v = Vocabulary::build(
      std::vector<Strings>{{"The", "the", "THE", "1990", "2024", "\xC3\x89t\xC3\xA9", "<bos>"}},
      options);
  CHECK(v.special_count() == 4);
  CHECK(v.id("<bos>") == 2);
  CHECK(v.id("<eos>") == 3);
  CHECK(v.token(4) == "the");      // 3 occurrences
  CHECK(v.token(5) == "0000");     // 2 occurrences
  CHECK(v.id("tHe") == 4);         // lookups are normalised too
  CHECK(v.id("1234") == 5);
  CHECK(v.id("\xC3\xA9T\xC3\x89") == v.id("\xC3\xA9t\xC3\xA9"));  // éTÉ == été
  CHECK(v.id("\xC3\xA9t\xC3\xA9") != Vocabulary::unk_id);
  CHECK(v.size() == 7);
  CHECK(v.id("bad\xFF") == Vocabulary::unk_id);  // lookups never throw
  CHECK(v.normalize("AB12") == "ab00");
}

TEST_CASE("Vocabulary: save and load round-trip, atomically") {
  TempDir dir;
  VocabOptions options;
  options.normalizer.lowercase = true;
  options.extra_specials = {"<bos>"};
  const auto v = Vocabulary::build(
      std::vector<Strings>{{"Paris", "paris", "\xE6\x97\xA5\xE6\x9C\xAC", "x"}}, options);
  const fs::path file = dir.path() / "words.vocab";
  v.save(file);
  for (const auto& entry : fs::directory_iterator(dir.path()))  // no temporary left behind
    CHECK(entry.path().filename() == "words.vocab");
  CHECK(read_file(file) ==
        "#mtlm-vocab v1 specials=3 lowercase=1 digits=0\n<pad>\n<unk>\n<bos>\nparis\nx\n"
        "\xE6\x97\xA5\xE6\x9C\xAC\n");
  const auto w = Vocabulary::load(file);
  CHECK(w.tokens() == v.tokens());
  CHECK(w.special_count() == 3);
  CHECK(w.normalizer() == v.normalizer());
  CHECK(w.id("PARIS") == v.id("paris"));
  CHECK(w.count(3) == 0);  // counts are not saved

  // Saving again replaces the file; a missing folder is an error and leaves nothing behind.
  Vocabulary::build(std::vector<Strings>{{"other"}}).save(file);
  CHECK(Vocabulary::load(file).token(2) == "other");
  CHECK_THROWS_AS(v.save(dir.path() / "missing" / "v.vocab"), Error);
  CHECK(!fs::exists(dir.path() / "missing"));
}

TEST_CASE("Vocabulary: malformed files are FormatErrors with the line") {
  TempDir dir;
  struct Case {
    std::string content;
    std::size_t line;
    const char* what;
  };
  const std::string header = "#mtlm-vocab v1 specials=2 lowercase=0 digits=0\n";
  const std::vector<Case> cases{
      {"", 0, "empty file"},
      {"<pad>\n<unk>\n", 1, "header"},
      {"#mtlm-vocab v2 specials=2 lowercase=0 digits=0\n<pad>\n<unk>\n", 1, "header"},
      {"#mtlm-vocab v1 specials=2 lowercase=2 digits=0\n<pad>\n<unk>\n", 1, "header"},
      {"#mtlm-vocab v1 specials=x lowercase=0 digits=0\n<pad>\n<unk>\n", 1, "header"},
      {header + "<unk>\n<pad>\n", 2, "<pad> and <unk>"},
      {header + "<pad>\n<unk>\na\nb\na\n", 6, "duplicate entry 'a'"},
      {header + "<pad>\n<unk>\na\n\nb\n", 5, "empty entry"},
      {header + "<pad>\n<unk>\na\xFF\n", 4, "invalid UTF-8"},
      {"#mtlm-vocab v1 specials=4 lowercase=0 digits=0\n<pad>\n<unk>\n<bos>\n", 4, "specials"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const auto file = dir.write("bad.vocab", c.content);
    const auto e = format_error([&] { Vocabulary::load(file); });
    CHECK(e.line() == c.line);
    CHECK(e.file() == file.string());
    CHECK(std::string(e.what()).find(c.what) != std::string::npos);
  }
  const auto missing = format_error([&] { Vocabulary::load(dir.path() / "nope.vocab"); });
  CHECK(missing.line() == 0);
  CHECK(std::string(missing.what()).find("no such file") != std::string::npos);
  // CRLF line ends (a file edited on Windows) are accepted.
  const auto crlf = dir.write("crlf.vocab", "#mtlm-vocab v1 specials=2 lowercase=0 digits=0\r\n"
                                            "<pad>\r\n<unk>\r\nword\r\n");
  CHECK(Vocabulary::load(crlf).token(2) == "word");
}

TEST_CASE("LabelSet: no unknown entry unless asked") {
  const std::vector<Strings> tags{{"O", "B-city", "I-city"}, {"B-date", "O"}};
  const auto set = LabelSet::build(tags);
  CHECK(set.labels() == Strings{"B-city", "B-date", "I-city", "O"});  // byte order
  CHECK(set.id("O") == 3);
  CHECK(set.find("B-airline") == std::nullopt);
  CHECK_THROWS_AS(set.id("B-airline"), Error);
  CHECK(!set.has_unknown());
  CHECK(set.ids(Strings{"O", "B-city"}) == std::vector<TokenId>{3, 0});
  CHECK(set.labels(std::vector<TokenId>{2, 3}) == Strings{"I-city", "O"});
  CHECK_THROWS_AS(set.label(4), Error);

  const auto intents = LabelSet::build(Strings{"flight", "airfare", "flight"}, "<unk>");
  CHECK(intents.has_unknown());
  CHECK(intents.size() == 3);
  CHECK(intents.unknown_id() == 0);
  CHECK(intents.label(0) == "<unk>");
  CHECK(intents.id("airfare") == 1);
  CHECK(intents.id("atis_day_name") == 0);            // unseen -> the unknown label
  CHECK(intents.find("atis_day_name") == std::nullopt);  // find still says "not a label"

  CHECK(LabelSet(Strings{"z", "a"}).id("z") == 0);  // explicit order is kept
  CHECK_THROWS_AS(LabelSet(Strings{"a", "a"}), Error);
}

TEST_CASE("LabelSet: save and load round-trip; malformed files") {
  TempDir dir;
  const auto with_unknown = LabelSet(Strings{"b", "a"}, "<unk>");
  with_unknown.save(dir.path() / "intents.labels");
  CHECK(read_file(dir.path() / "intents.labels") == "#mtlm-labels v1 unknown=1\n<unk>\nb\na\n");
  const auto loaded = LabelSet::load(dir.path() / "intents.labels");
  CHECK(loaded.labels() == with_unknown.labels());
  CHECK(loaded.has_unknown());
  CHECK(loaded.id("zzz") == 0);

  LabelSet(Strings{"O"}).save(dir.path() / "tags.labels");
  CHECK(!LabelSet::load(dir.path() / "tags.labels").has_unknown());

  const auto dup = dir.write("dup.labels", "#mtlm-labels v1 unknown=0\nO\nB-x\nO\n");
  CHECK(format_error([&] { LabelSet::load(dup); }).line() == 4);
  const auto empty = dir.write("empty.labels", "#mtlm-labels v1 unknown=0\nO\n\nB-x\n");
  CHECK(format_error([&] { LabelSet::load(empty); }).line() == 3);
  const auto header = dir.write("header.labels", "O\nB-x\n");
  CHECK(format_error([&] { LabelSet::load(header); }).line() == 1);
}

// ---- character features --------------------------------------------------------------------

TEST_CASE("CharVocabulary and char_ids: markers, padding, truncation, unknown characters") {
  const auto chars = CharVocabulary::build(Strings{"abc", "aab", "n\xC3\xA9"});
  // counts: a 3, b 2, c 1, n 1, é 1 -> a=4, b=5, then c n é in byte order
  CHECK(chars.id(U'a') == 4);
  CHECK(chars.id(U'b') == 5);
  CHECK(chars.id(U'c') == 6);
  CHECK(chars.id(U'n') == 7);
  CHECK(chars.id(0xE9) == 8);
  CHECK(chars.id(U'z') == CharVocabulary::unk_id);
  CHECK(chars.id(U' ') == CharVocabulary::unk_id);
  CHECK(chars.size() == 9);

  CharIdOptions options;
  options.max_chars = 4;
  CHECK(options.width() == 6);
  CHECK(char_ids("abz", chars, options) == std::vector<TokenId>{2, 4, 5, 1, 3, 0});
  CHECK(char_ids("abcabc", chars, options) == std::vector<TokenId>{2, 4, 5, 6, 4, 3});
  CHECK(char_ids("n\xC3\xA9", chars, options) == std::vector<TokenId>{2, 7, 8, 3, 0, 0});
  CHECK(char_ids("", chars, options) == std::vector<TokenId>{2, 3, 0, 0, 0, 0});
  options.markers = false;
  CHECK(char_ids("ab", chars, options) == std::vector<TokenId>{4, 5, 0, 0});
  CHECK_THROWS_AS(char_ids("a\xFF", chars, options), FormatError);

  SUBCASE("normalised characters") {
    Normalizer digits;
    digits.digits_to_zero = true;
    const auto d = CharVocabulary::build(Strings{"a1", "b7"}, 1, digits);
    CHECK(d.id(U'5') == d.id(U'0'));
    CHECK(d.id(U'0') != CharVocabulary::unk_id);
  }
  SUBCASE("save and load") {
    TempDir dir;
    chars.save(dir.path() / "chars.vocab");
    const auto back = CharVocabulary::load(dir.path() / "chars.vocab");
    CHECK(back.vocabulary().tokens() == chars.vocabulary().tokens());
    CHECK(back.id(0xE9) == 8);
    Vocabulary::build(std::vector<Strings>{{"word"}}).save(dir.path() / "words.vocab");
    CHECK_THROWS_AS(CharVocabulary::load(dir.path() / "words.vocab"), FormatError);
  }
}

TEST_CASE("char_id_batch lays words out like the batch columns") {
  const auto chars = CharVocabulary::build(Strings{"ab"});
  const std::vector<Strings> sentences{{"a", "b", "ab"}, {"b"}, {"ba", "a"}};
  const std::vector<std::vector<TokenId>> word_ids{{5, 6, 7}, {6}, {8, 5}};
  const std::vector<Index> indices{2, 1};
  const Batch batch = make_batch(word_ids, indices);
  CharIdOptions options;
  options.max_chars = 2;
  const auto c = char_id_batch(sentences, indices, batch, chars, options);
  CHECK(c.width == 4);
  CHECK(c.columns == 4);  // 2 sequences x T = 2
  const std::vector<TokenId> ba{2, chars.id(U'b'), chars.id(U'a'), 3};
  for (Index k = 0; k < 4; ++k) {
    CHECK(c(k, batch.column(0, 0)) == ba[static_cast<std::size_t>(k)]);
    CHECK(c(k, batch.column(1, 1)) == CharVocabulary::pad_id);  // padding column
  }
  CHECK(c(1, batch.column(1, 0)) == chars.id(U'b'));
  const std::vector<Index> wrong{0, 1};  // sentence 0 has 3 words, the batch says 2
  CHECK_THROWS_AS(char_id_batch(sentences, wrong, batch, chars, options), ShapeError);
}

TEST_CASE("char n-grams: FNV-1a buckets of marker-wrapped code point n-grams") {
  // Reference values of 32-bit FNV-1a.
  CHECK(fnv1a32("") == 0x811c9dc5u);
  CHECK(fnv1a32("a") == 0xe40c292cu);
  CHECK(fnv1a32("foobar") == 0xbf9cf968u);

  NgramOptions options;
  options.buckets = 1000;
  const auto ab = char_ngram_buckets("ab", options);
  // <ab> has 4 symbols: 3 bigrams, 2 trigrams, 1 four-gram.
  const std::vector<std::string> grams{"\xFE" "a", "ab", "b\xFF", "\xFE" "ab", "ab\xFF",
                                       "\xFE" "ab\xFF"};
  REQUIRE(ab.size() == grams.size());
  for (std::size_t i = 0; i < grams.size(); ++i) CHECK(ab[i] == fnv1a32(grams[i]) % 1000);
  // Multi-byte characters count once: 日本 has as many n-grams as ab.
  const auto cjk = char_ngram_buckets("\xE6\x97\xA5\xE6\x9C\xAC", options);
  CHECK(cjk.size() == ab.size());
  CHECK(cjk[1] == fnv1a32("\xE6\x97\xA5\xE6\x9C\xAC") % 1000);
  // Without markers, prefixes are not distinguished and short words get fewer n-grams.
  options.markers = false;
  CHECK(char_ngram_buckets("ab", options) == std::vector<std::uint32_t>{fnv1a32("ab") % 1000});
  CHECK(char_ngram_buckets("a", options).empty());
  // A long word: L + 2 - n + 1 n-grams per n.
  options.markers = true;
  options.buckets = 7;
  const auto longer = char_ngram_buckets("multitask", options);
  CHECK(longer.size() == 10 + 9 + 8);
  for (auto b : longer) CHECK(b < 7);
  options.min_n = 0;
  CHECK_THROWS_AS(char_ngram_buckets("x", options), Error);
  CHECK_THROWS_AS(char_ngram_buckets("\xC3", NgramOptions{}), FormatError);

  const std::vector<Strings> sentences{{"ab", "c"}, {"d"}};
  const std::vector<std::vector<TokenId>> ids{{1, 1}, {1}};
  const std::vector<Index> indices{0, 1};
  const Batch batch = make_batch(ids, indices);
  const auto nb = char_ngram_batch(sentences, indices, batch);
  REQUIRE(nb.offsets.size() == 5);
  CHECK(nb.offsets[1] - nb.offsets[0] == 6);  // "ab"
  CHECK(nb.offsets[2] - nb.offsets[1] == 3);  // "c": 2 bigrams + 1 trigram
  CHECK(nb.offsets[3] - nb.offsets[2] == 3);  // "d"
  CHECK(nb.offsets[4] == nb.offsets[3]);      // padding column
  CHECK(nb.buckets.size() == 12);
}

// ---- readers -------------------------------------------------------------------------------

TEST_CASE("read_atis: the three parallel files") {
  TempDir dir;
  dir.write("train/seq.in", "i want to fly to boston\nshow fares\nlist flights to st. louis\n");
  dir.write("train/seq.out",
            "O O O O O B-toloc.city_name\nO O\nO O O B-toloc.city_name I-toloc.city_name\n");
  dir.write("train/label", "atis_flight\natis_airfare\natis_flight#atis_airfare\n");
  const auto data = read_atis(dir.path() / "train");
  REQUIRE(data.size() == 3);
  CHECK(data[0].tokens == Strings{"i", "want", "to", "fly", "to", "boston"});
  CHECK(data[0].tags.back() == "B-toloc.city_name");
  CHECK(data[0].label == "atis_flight");
  CHECK(data[2].tokens[3] == "st.");
  CHECK(data[2].label == "atis_flight#atis_airfare");
  CHECK(data[2].line == 3);
  CHECK(tokens_of(data)[1] == Strings{"show", "fares"});
  CHECK(labels_of(data)[1] == "atis_airfare");
  CHECK(tags_of(data)[1] == Strings{"O", "O"});

  SUBCASE("CRLF line ends and trailing blank lines are accepted") {
    dir.write("crlf/seq.in", "a b\r\nc\r\n\r\n");
    dir.write("crlf/seq.out", "O O\r\nB-x\r\n");
    dir.write("crlf/label", "p\r\nq\r\n\n");
    const auto crlf = read_atis(dir.path() / "crlf");
    REQUIRE(crlf.size() == 2);
    CHECK(crlf[1].tags == Strings{"B-x"});
    CHECK(crlf[1].label == "q");
  }
  SUBCASE("tags or labels can be left out") {
    AtisOptions no_tags;
    no_tags.tags_file = "";
    const auto d = read_atis(dir.path() / "train", no_tags);
    CHECK(d[0].tags.empty());
    CHECK(d[0].label == "atis_flight");
  }
}

TEST_CASE("read_atis: every malformed input is a FormatError naming file and line") {
  TempDir dir;
  auto split = [&](const std::string& name, const std::string& in, const std::string& out,
                   const std::string& label) {
    dir.write(name + "/seq.in", in);
    dir.write(name + "/seq.out", out);
    dir.write(name + "/label", label);
    return dir.path() / name;
  };
  {
    const auto e = format_error(
        [&] { read_atis(split("count", "a b\nc d\n", "O O\nO\n", "x\ny\n")); });
    CHECK(e.file() == (dir.path() / "count" / "seq.out").string());
    CHECK(e.line() == 2);
    CHECK(std::string(e.what()).find("1 tags for 2 tokens") != std::string::npos);
  }
  {
    const auto e = format_error([&] { read_atis(split("lines", "a\nb\n", "O\nO\n", "x\n")); });
    CHECK(e.file() == (dir.path() / "lines" / "label").string());
    CHECK(std::string(e.what()).find("1 lines") != std::string::npos);
  }
  {
    const auto e = format_error([&] { read_atis(split("empty", "a\n\nb\n", "O\n\nO\n", "x\ny\nz\n")); });
    CHECK(e.line() == 2);
    CHECK(std::string(e.what()).find("empty utterance") != std::string::npos);
  }
  {
    const auto e = format_error([&] { read_atis(split("nolabel", "a\nb\nc\n", "O\nO\nO\n", "x\n \nz\n")); });
    CHECK(e.line() == 2);
    CHECK(std::string(e.what()).find("empty label") != std::string::npos);
  }
  {
    const auto e = format_error([&] { read_atis(split("spaces", "a\n", "O\n", "x y\n")); });
    CHECK(std::string(e.what()).find("whitespace") != std::string::npos);
  }
  {
    const auto e = format_error([&] { read_atis(split("utf8", "a\nb \xC3\n", "O\nO O\n", "x\ny\n")); });
    CHECK(e.file() == (dir.path() / "utf8" / "seq.in").string());
    CHECK(e.line() == 2);
    CHECK(std::string(e.what()).find("invalid UTF-8 at byte 2") != std::string::npos);
  }
  {
    dir.write("missing/seq.in", "a\n");
    dir.write("missing/label", "x\n");
    const auto e = format_error([&] { read_atis(dir.path() / "missing"); });
    CHECK(e.file() == (dir.path() / "missing" / "seq.out").string());
    CHECK(e.line() == 0);
  }
  CHECK_THROWS_AS(read_atis(dir.path() / "no_such_split"), FormatError);
}

TEST_CASE("read_conll: sentences, columns, -DOCSTART-") {
  TempDir dir;
  const auto file = dir.write("train.txt",
                              "-DOCSTART- -X- -X- O\n"
                              "\n"
                              "EU NNP B-NP B-ORG\n"
                              "rejects VBZ B-VP O\n"
                              "German JJ B-NP B-MISC\n"
                              "\n"
                              "Peter NNP B-NP B-PER\n"
                              "Blackburn\tNNP  I-NP I-PER\n"
                              "\n"
                              "-DOCSTART- -X- -X- O\n"
                              "\n"
                              "BRUSSELS NNP B-NP B-LOC\n"
                              "\n"
                              "\n");
  const auto sentences = read_conll(file);
  REQUIRE(sentences.size() == 3);
  CHECK(sentences[0].tokens == Strings{"EU", "rejects", "German"});
  REQUIRE(sentences[0].tags.size() == 3);
  CHECK(sentences[0].tags[conll2003::pos] == Strings{"NNP", "VBZ", "JJ"});
  CHECK(sentences[0].tags[conll2003::chunk] == Strings{"B-NP", "B-VP", "B-NP"});
  CHECK(sentences[0].tags[conll2003::ner] == Strings{"B-ORG", "O", "B-MISC"});
  CHECK(sentences[0].line == 3);
  CHECK(sentences[1].tags[conll2003::ner] == Strings{"B-PER", "I-PER"});  // tab and double space
  CHECK(sentences[2].tokens == Strings{"BRUSSELS"});
  CHECK(sentences[2].line == 12);
  const auto ner = to_sequence_examples(sentences, conll2003::ner);
  CHECK(ner[1].tags == Strings{"B-PER", "I-PER"});
  CHECK(ner[1].label.empty());
  CHECK_THROWS_AS(to_sequence_examples(sentences, 3), Error);

  SUBCASE("a -DOCSTART- line directly after a sentence ends it; nothing is lost") {
    const auto f = dir.write("nodoc.txt", "a X\nb Y\n-DOCSTART- O\nc Z\n");
    const auto s = read_conll(f);
    REQUIRE(s.size() == 2);
    CHECK(s[0].tokens == Strings{"a", "b"});
    CHECK(s[1].tokens == Strings{"c"});
    ConllOptions keep;
    keep.skip_docstart = false;
    CHECK(read_conll(f, keep).size() == 1);  // now -DOCSTART- is an ordinary token line
  }
  SUBCASE("a file of tokens only, and no trailing newline") {
    const auto s = read_conll(dir.write("tokens.txt", "a\nb\n\nc"));
    REQUIRE(s.size() == 2);
    CHECK(s[1].tokens == Strings{"c"});
    CHECK(s[1].tags.empty());
  }
}

TEST_CASE("read_conll: inconsistent columns and bad bytes are FormatErrors") {
  TempDir dir;
  const auto file = dir.write("bad.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP\n");
  const auto e = format_error([&] { read_conll(file); });
  CHECK(e.line() == 2);
  CHECK(std::string(e.what()).find("3 fields, expected 4 (as on line 1)") != std::string::npos);
  ConllOptions two;
  two.columns = 2;
  const auto e2 = format_error([&] { read_conll(file, two); });
  CHECK(e2.line() == 1);
  const auto utf = dir.write("utf.txt", "a O\n\nb\xE2\x82 O\n");
  CHECK(format_error([&] { read_conll(utf); }).line() == 3);
  CHECK(format_error([&] { read_conll(dir.path() / "none.txt"); }).line() == 0);
}

TEST_CASE("read_tsv: GLUE layout with a header") {
  TempDir dir;
  const auto train = dir.write("train.tsv",
                               "sentence\tlabel\n"
                               "hide new secretions from the parental units \t0\n"
                               "it 's a charming and often affecting journey . \t1\n");
  const auto data = read_tsv(train);
  REQUIRE(data.size() == 2);
  CHECK(data[0].tokens == Strings{"hide", "new", "secretions", "from", "the", "parental", "units"});
  CHECK(data[0].label == "0");
  CHECK(data[1].tokens[1] == "'s");
  CHECK(data[1].line == 3);
  CHECK(data[1].tags.empty());

  // Columns are found by name; an unlabelled file reads with label_column = "".
  const auto test = dir.write("test.tsv", "index\tsentence\r\n0\tuneasy mishmash .\r\n1\tgood\r\n");
  TsvOptions unlabelled;
  unlabelled.label_column = "";
  const auto t = read_tsv(test, unlabelled);
  REQUIRE(t.size() == 2);
  CHECK(t[0].tokens == Strings{"uneasy", "mishmash", "."});
  CHECK(t[0].label.empty());
  const auto swapped = dir.write("swapped.tsv", "label\tsentence\n1\tnice one\n");
  CHECK(read_tsv(swapped)[0].tokens == Strings{"nice", "one"});
}

TEST_CASE("read_tsv: malformed rows are FormatErrors") {
  TempDir dir;
  struct Case {
    std::string content;
    std::size_t line;
    const char* what;
  };
  const std::vector<Case> cases{
      {"", 1, "missing header"},
      {"text\tlabel\na\t1\n", 1, "no column 'sentence'"},
      {"sentence\tlabel\tlabel\na\t1\t1\n", 1, "appears twice"},
      {"sentence\tlabel\na b\t1\nc\t0\textra\n", 3, "3 fields, the header has 2"},
      {"sentence\tlabel\na b\n", 2, "1 fields"},
      {"sentence\tlabel\na\t1\n\nb\t0\n", 3, "blank line"},
      {"sentence\tlabel\n \t1\n", 2, "empty sentence"},
      {"sentence\tlabel\na\t \n", 2, "empty label"},
      {"sentence\tlabel\na\t1\n\xC3\x28\t0\n", 3, "invalid UTF-8"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const auto file = dir.write("bad.tsv", c.content);
    const auto e = format_error([&] { read_tsv(file); });
    CHECK(e.line() == c.line);
    CHECK(std::string(e.what()).find(c.what) != std::string::npos);
  }
}

TEST_CASE("readers load the real data sets completely (skipped without /work/shared/data)") {
  const char* env = std::getenv("MTLM_DATA_DIR");
  const fs::path root = env ? fs::path(env) : fs::path("/work/shared/data");
  if (!fs::exists(root / "atis") || !fs::exists(root / "conll2003") || !fs::exists(root / "sst2")) {
    MESSAGE("real-data check skipped: " << root.string() << " not found");
    return;
  }
  SUBCASE("ATIS (counts from SOURCE.md)") {
    struct Split {
      const char* name;
      std::size_t examples, tokens, max_length, intents, tags, spans;
    };
    for (const Split& s : {Split{"train", 4478, 50497, 46, 21, 120, 14851},
                           Split{"valid", 500, 5703, 35, 16, 96, 1709},
                           Split{"test", 893, 9164, 30, 20, 101, 2837}}) {
      INFO(s.name);
      const auto data = read_atis(root / "atis" / s.name);
      std::size_t tokens = 0, max_length = 0, begins = 0, spans = 0;
      for (const auto& e : data) {
        tokens += e.tokens.size();
        max_length = std::max(max_length, e.tokens.size());
        for (const auto& t : e.tags) begins += t.starts_with("B-");
        spans += metrics::extract_spans(e.tags).size();
      }
      CHECK(data.size() == s.examples);
      CHECK(tokens == s.tokens);
      CHECK(max_length == s.max_length);
      CHECK(static_cast<std::size_t>(LabelSet::build(labels_of(data)).size()) == s.intents);
      CHECK(static_cast<std::size_t>(LabelSet::build(tags_of(data)).size()) == s.tags);
      CHECK(begins == s.spans);
      CHECK(spans == s.spans);  // every I-x follows B-x or I-x, so spans = B- tags
    }
  }
  SUBCASE("CoNLL-2003 (counts from SOURCE.md)") {
    struct Split {
      const char* name;
      std::size_t sentences, tokens;
      std::map<std::string, std::size_t> entities;
    };
    for (const Split& s :
         {Split{"train.txt", 14041, 203621, {{"PER", 6600}, {"LOC", 7140}, {"ORG", 6321}, {"MISC", 3438}}},
          Split{"dev.txt", 3250, 51362, {{"PER", 1842}, {"LOC", 1837}, {"ORG", 1341}, {"MISC", 922}}},
          Split{"test.txt", 3453, 46435, {{"PER", 1617}, {"LOC", 1668}, {"ORG", 1661}, {"MISC", 702}}}}) {
      INFO(s.name);
      const auto sentences = read_conll(root / "conll2003" / s.name);
      std::size_t tokens = 0;
      std::map<std::string, std::size_t> entities;
      for (const auto& sentence : sentences) {
        tokens += sentence.tokens.size();
        for (const auto& span : metrics::extract_spans(sentence.tags[conll2003::ner]))
          ++entities[span.type];
      }
      CHECK(sentences.size() == s.sentences);
      CHECK(tokens == s.tokens);
      CHECK(entities == s.entities);
    }
  }
  SUBCASE("SST-2 (counts from SOURCE.md)") {
    auto count = [](const std::vector<SequenceExample>& data, const char* label) {
      std::size_t n = 0;
      for (const auto& e : data) n += e.label == label;
      return n;
    };
    const auto train = read_tsv(root / "sst2" / "train.tsv");
    CHECK(train.size() == 67349);
    CHECK(count(train, "0") == 29780);
    CHECK(count(train, "1") == 37569);
    const auto dev = read_tsv(root / "sst2" / "dev.tsv");
    CHECK(dev.size() == 872);
    CHECK(count(dev, "0") == 428);
    TsvOptions unlabelled;
    unlabelled.label_column = "";
    CHECK(read_tsv(root / "sst2" / "test.tsv", unlabelled).size() == 1821);
    const auto labelled = read_tsv(root / "sst2" / "test-labeled.tsv");  // CRLF
    CHECK(labelled.size() == 1821);
    CHECK(count(labelled, "0") == 917);
    CHECK(count(labelled, "1") == 904);
  }
}

// ---- batching ------------------------------------------------------------------------------

TEST_CASE("bucket_batches: covers every example once, respects the limits") {
  Rng lengths_rng(11);
  std::vector<Index> lengths(1000);
  Index real_tokens = 0;
  for (auto& l : lengths) {
    l = 1 + static_cast<Index>(lengths_rng.below(40));
    real_tokens += l;
  }
  BatchingOptions options;
  options.max_sequences = 16;
  options.max_tokens = 200;
  Rng rng(5);
  const auto batches = bucket_batches(lengths, options, rng);
  std::vector<int> seen(lengths.size(), 0);
  Index padded_tokens = 0;
  for (const auto& batch : batches) {
    REQUIRE(!batch.empty());
    CHECK(static_cast<Index>(batch.size()) <= options.max_sequences);
    Index longest = 0;
    for (Index i : batch) {
      ++seen[static_cast<std::size_t>(i)];
      longest = std::max(longest, lengths[static_cast<std::size_t>(i)]);
    }
    CHECK(static_cast<Index>(batch.size()) * longest <= options.max_tokens);
    padded_tokens += static_cast<Index>(batch.size()) * longest;
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));

  // Against batches of 16 in random order (what batching without buckets gives).
  Rng naive_rng(5);
  std::vector<Index> order(lengths.size());
  std::iota(order.begin(), order.end(), Index{0});
  naive_rng.shuffle(order);
  Index naive_padded = 0;
  for (std::size_t start = 0; start < order.size(); start += 16) {
    Index longest = 0;
    const std::size_t end = std::min(order.size(), start + 16);
    for (std::size_t k = start; k < end; ++k)
      longest = std::max(longest, lengths[static_cast<std::size_t>(order[k])]);
    naive_padded += static_cast<Index>(end - start) * longest;
  }
  MESSAGE("padding overhead: bucketed " << double(padded_tokens) / double(real_tokens)
                                        << "x, unbucketed " << double(naive_padded) / double(real_tokens)
                                        << "x of " << real_tokens << " real tokens");
  CHECK(double(padded_tokens) < 1.05 * double(real_tokens));
  CHECK(padded_tokens < naive_padded);
}

TEST_CASE("bucket_batches: deterministic for a seed, different across seeds and epochs") {
  std::vector<Index> lengths;
  for (Index i = 0; i < 300; ++i) lengths.push_back(1 + (i * 37) % 23);
  BatchingOptions options;
  options.max_sequences = 8;
  options.pool_size = 64;
  Rng a(42), b(42), c(43);
  const auto first = bucket_batches(lengths, options, a);
  CHECK(first == bucket_batches(lengths, options, b));
  CHECK(first != bucket_batches(lengths, options, c));
  CHECK(first != bucket_batches(lengths, options, a));  // the next epoch differs

  SUBCASE("without shuffling, batches depend only on the lengths") {
    options.shuffle = false;
    Rng x(1), y(2);
    const auto sorted = bucket_batches(lengths, options, x);
    CHECK(sorted == bucket_batches(lengths, options, y));
    // Pools of 64 in data order, each sorted by length (stable): the first batch holds the
    // shortest sequences of the first pool.
    for (Index i : sorted.front()) CHECK(i < 64);
    CHECK(lengths[static_cast<std::size_t>(sorted.front().front())] == 1);
  }
  SUBCASE("a sequence longer than the token budget gets a batch of its own") {
    options.max_tokens = 10;
    std::vector<Index> few{3, 50, 3, 4};
    Rng r(3);
    const auto batches = bucket_batches(few, options, r);
    bool alone = false;
    for (const auto& batch : batches) alone |= batch == std::vector<Index>{1};
    CHECK(alone);
  }
  SUBCASE("bad options") {
    options.max_sequences = 0;
    CHECK_THROWS_AS(bucket_batches(lengths, options, a), Error);
    CHECK(bucket_batches(std::vector<Index>{}, BatchingOptions{}, a).empty());
  }
}

TEST_CASE("make_batch, make_token_targets and gather turn indices into model inputs") {
  const std::vector<std::vector<TokenId>> words{{5, 6, 7}, {8}, {9, 10}};
  const std::vector<std::vector<TokenId>> tags{{1, 0, 2}, {3}, {0, 0}};
  const std::vector<std::string> intents{"a", "b", "c"};
  const std::vector<Index> indices{2, 0};
  const Batch batch = make_batch(words, indices);
  CHECK(batch.batch_size == 2);
  CHECK(batch.max_length == 3);
  CHECK(batch.lengths == std::vector<Index>{2, 3});
  CHECK(batch.tokens == std::vector<TokenId>{9, 10, 0, 5, 6, 7});
  CHECK(make_token_targets(tags, indices, batch) == std::vector<TokenId>{0, 0, -1, 1, 0, 2});
  CHECK(make_token_targets(tags, indices, batch, -100)[2] == -100);
  CHECK(gather(intents, indices) == Strings{"c", "a"});
  CHECK(sequence_lengths(words) == std::vector<Index>{3, 1, 2});

  CHECK_THROWS_AS(make_batch(words, std::vector<Index>{3}), ShapeError);
  const std::vector<std::vector<TokenId>> short_tags{{1, 0}, {3}, {0, 0}};
  CHECK_THROWS_AS(make_token_targets(short_tags, indices, batch), ShapeError);
  CHECK_THROWS_AS(gather(intents, std::vector<Index>{-1}), ShapeError);
}
