// FNV-1a (core/hash.hpp): the published test vectors, and the word-at-a-time form the search's
// genome tables use.
#include <doctest/doctest.h>

#include <string>

#include "core/hash.hpp"

namespace core_hash_test {

using namespace bitplan;

TEST_CASE("fnv1a64_hex matches the published FNV-1a test vectors") {
  // Vectors from the reference implementation's test suite (Fowler, Noll, Vo: test_fnv.c).
  CHECK(fnv1a64_hex("") == "cbf29ce484222325");
  CHECK(fnv1a64_hex("a") == "af63dc4c8601ec8c");
  CHECK(fnv1a64_hex("foobar") == "85944171f73967e8");
  CHECK(fnv1a64_hex(std::string("\0\xff", 2)) != fnv1a64_hex(std::string("\xff\0", 2)));
  static_assert(fnv1a64("a") == 0xaf63dc4c8601ec8cull, "usable at compile time");
}

TEST_CASE("Fnv1a64 hashes bytes one step each, and words one step each") {
  Fnv1a64 bytes;
  bytes.add_bytes("foo");
  bytes.add_bytes("bar");
  CHECK(bytes.value() == fnv1a64("foobar"));

  // A word is one step, not eight byte steps: the genome tables rely on nothing more than
  // equal words giving equal hashes, and the reference step on a byte-sized word.
  Fnv1a64 word;
  word.add(static_cast<unsigned char>('a'));
  CHECK(word.value() == fnv1a64("a"));
  Fnv1a64 large;
  large.add(0x0102030405060708ull);
  CHECK(large.value() == ((Fnv1a64::kOffsetBasis ^ 0x0102030405060708ull) * Fnv1a64::kPrime));
}

}  // namespace core_hash_test
