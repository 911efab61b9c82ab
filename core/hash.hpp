// 64-bit FNV-1a: the one hash bitplan writes down (model hashes in plans and profiles,
// calibration cache keys) and the one its hash tables of plans use.
//
//   Fnv1a64 hash;                     // or fnv1a64_hex(bytes) for a whole string at once
//   for (const int option : genome) hash.add(static_cast<std::uint64_t>(option));
//   return hash.value();
//
// Chosen for being tiny, dependency-free and stable across compilers and runs (std::hash is
// neither), with accidental collisions at ~2^-64 per pair. It is not collision resistant: a
// deliberately crafted collision could only make bitplan reuse another model's ranges from its
// own cache folder, which the person crafting it already controls.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bitplan {

class Fnv1a64 {
 public:
  static constexpr std::uint64_t kOffsetBasis = 14695981039346656037ull;
  static constexpr std::uint64_t kPrime = 1099511628211ull;

  // One FNV-1a step. Hashing text feeds it one byte at a time; an in-memory table may feed
  // whole words (one step per genome index) since no such value is ever stored.
  constexpr void add(std::uint64_t unit) { hash_ = (hash_ ^ unit) * kPrime; }
  constexpr void add_bytes(std::string_view bytes) {
    for (const char c : bytes) add(static_cast<unsigned char>(c));
  }
  constexpr std::uint64_t value() const { return hash_; }

 private:
  std::uint64_t hash_ = kOffsetBasis;
};

// FNV-1a of `bytes`.
constexpr std::uint64_t fnv1a64(std::string_view bytes) {
  Fnv1a64 hash;
  hash.add_bytes(bytes);
  return hash.value();
}

// fnv1a64 of `bytes` as 16 lowercase hex digits, the form plans, profiles and cache file names
// store.
std::string fnv1a64_hex(std::string_view bytes);

}  // namespace bitplan
