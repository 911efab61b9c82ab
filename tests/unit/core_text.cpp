// Text for JSON, CSV and HTML outputs: names from users' files need not be UTF-8, and CSV
// fields may hold commas and quotes (issue 17.5).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "core/text.hpp"

namespace core_text_test {

using namespace bitplan;

namespace {
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}

TEST_CASE("17.5 valid_utf8 keeps valid text and replaces each invalid byte with U+FFFD") {
  CHECK(valid_utf8("") == "");
  CHECK(valid_utf8("plain ASCII, tabs\tand\nnewlines") == "plain ASCII, tabs\tand\nnewlines");
  // Two-, three- and four-byte sequences at the edges of their ranges stay as they are.
  for (const std::string valid :
       {"\xC2\x80", "caf\xC3\xA9", "\xE0\xA0\x80", "\xE2\x82\xAC", "\xED\x9F\xBF", "\xEE\x80\x80",
        "\xF0\x90\x80\x80", "\xF0\x9D\x84\x9E", "\xF4\x8F\xBF\xBF"})
    CHECK(valid_utf8(valid) == valid);

  CHECK(valid_utf8("m\xFF.onnx") == "m" + kReplacement + ".onnx");
  CHECK(valid_utf8("\x80") == kReplacement);                     // a lone continuation
  CHECK(valid_utf8("\xC0\xAF") == kReplacement + kReplacement);  // overlong '/'
  CHECK(valid_utf8("\xE0\x80\xAF") == kReplacement + kReplacement + kReplacement);  // overlong
  CHECK(valid_utf8("\xED\xA0\x80") == kReplacement + kReplacement + kReplacement);  // surrogate
  CHECK(valid_utf8("\xF4\x90\x80\x80") ==  // above U+10FFFF
        kReplacement + kReplacement + kReplacement + kReplacement);
  CHECK(valid_utf8("\xF5\x80\x80\x80").find("\xF5") == std::string::npos);
  // A sequence cut short by the end of the text or by an ASCII byte.
  CHECK(valid_utf8("x\xE2\x82") == "x" + kReplacement + kReplacement);
  CHECK(valid_utf8("\xE2\x82y") == kReplacement + kReplacement + "y");
  // A NUL byte is valid UTF-8 and survives.
  CHECK(valid_utf8(std::string_view("a\0b", 3)) == std::string("a\0b", 3));
}

TEST_CASE("17.5 csv_field quotes every text field and doubles the quotes inside") {
  CHECK(csv_field("") == "\"\"");
  CHECK(csv_field("/net/net.1/Gemm") == "\"/net/net.1/Gemm\"");
  CHECK(csv_field("a,b") == "\"a,b\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_field("two\nlines") == "\"two\nlines\"");
  CHECK(csv_field("c\xFF") == "\"c" + kReplacement + "\"");
}

TEST_CASE("17.5 html_text escapes markup and replaces invalid bytes") {
  CHECK(html_text("<b>&\"'</b>") == "&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;");
  CHECK(html_text("caf\xC3\xA9 \xFF") == "caf\xC3\xA9 " + kReplacement);
}

TEST_CASE("17.5 json_text writes invalid UTF-8 as U+FFFD where dump() throws") {
  const nlohmann::json document = {{"model", "m\xFF.onnx"}, {"class\xFE", {1, 2}}};
  CHECK_THROWS_AS((void)document.dump(), nlohmann::json::type_error);
  const std::string text = json_text(document);
  const nlohmann::json parsed = nlohmann::json::parse(text);  // valid JSON
  CHECK(parsed["model"] == "m" + kReplacement + ".onnx");
  CHECK(parsed["class" + kReplacement] == nlohmann::json({1, 2}));
  // Valid documents are written exactly as dump() writes them.
  const nlohmann::ordered_json valid = {{"b", 1}, {"a", "caf\xC3\xA9"}};
  CHECK(json_text(valid, 2) == valid.dump(2));
}

}  // namespace core_text_test
