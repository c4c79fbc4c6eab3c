#pragma once
// A range asymmetric numeral system coder (rANS; Duda 2013) with a 64-bit state and 32-bit
// renormalization, used as a stack: push encodes a symbol, pop decodes the symbol pushed last.
// Torch-free; docs/compression.md describes the arithmetic.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <vaelab/error.hpp>

namespace vaelab::compress {

/// Where a stack takes words from when it is popped empty: the initial random stream of
/// bits-back coding (docs/compression.md). A splitmix64 sequence from a seed, one 32-bit word per
/// call; `drawn()` counts the words given out.
class RandomWords {
 public:
  explicit RandomWords(uint64_t seed) : state_(seed) {}
  uint32_t next() {
    ++drawn_;
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
  }
  uint64_t drawn() const { return drawn_; }

 private:
  uint64_t state_;
  uint64_t drawn_ = 0;
};

/// One rANS stack. The state x is kept in [2^32, 2^64); a symbol of frequency f out of a total
/// 2^precision (1 <= precision <= 31, 1 <= f, start + f <= 2^precision) is pushed as
///   if x >= f * 2^(64 - precision): emit the low 32 bits of x as a word, x >>= 32
///   x = (x / f) * 2^precision + (x mod f) + start
/// and popped by the inverse: c = x mod 2^precision is the symbol's cumulative value
/// (peek), then x = f * (x / 2^precision) + c - start and, if x < 2^32, x = x * 2^32 + the last
/// word. Each push or pop moves at most one word, and a push of probability p grows the
/// stream by −log2 p bits up to the renormalization's rounding.
class RansStack {
 public:
  static constexpr uint64_t kLow = uint64_t{1} << 32;

  /// A fresh stack: state 2^32 + `initial_low` (32 bits), no words; pops past the bottom draw
  /// from `underflow` when given, else throw.
  explicit RansStack(uint32_t initial_low = 0, RandomWords* underflow = nullptr)
      : state_(kLow | initial_low), underflow_(underflow) {}
  /// A stack read back from a file: `state` must be in [2^32, 2^64).
  RansStack(uint64_t state, std::vector<uint32_t> words, RandomWords* underflow = nullptr)
      : state_(state), words_(std::move(words)), underflow_(underflow) {}

  void push(uint32_t start, uint32_t freq, int precision) {
    const uint64_t limit = static_cast<uint64_t>(freq) << (64 - precision);
    if (state_ >= limit) {
      words_.push_back(static_cast<uint32_t>(state_));
      state_ >>= 32;
    }
    state_ = ((state_ / freq) << precision) + (state_ % freq) + start;
  }
  /// The cumulative value of the symbol on top, in [0, 2^precision).
  uint32_t peek(int precision) const {
    return static_cast<uint32_t>(state_ & ((uint64_t{1} << precision) - 1));
  }
  /// Removes the symbol on top, whose (start, freq) the caller found from peek().
  void pop(uint32_t start, uint32_t freq, int precision) {
    const uint64_t c = state_ & ((uint64_t{1} << precision) - 1);
    state_ = static_cast<uint64_t>(freq) * (state_ >> precision) + c - start;
    if (state_ < kLow) state_ = (state_ << 32) | next_word();
  }
  /// `bits` (1..31) uniform bits: a symbol of frequency 1 out of 2^bits.
  void push_bits(uint32_t value, int bits) { push(value, 1, bits); }
  uint32_t pop_bits(int bits) {
    const uint32_t v = peek(bits);
    pop(v, 1, bits);
    return v;
  }

  uint64_t state() const { return state_; }
  const std::vector<uint32_t>& words() const { return words_; }
  std::vector<uint32_t>& words() { return words_; }
  /// Information in the stack, in bits: 32 per word plus log2 of the state.
  double bits() const { return 32.0 * static_cast<double>(words_.size()) + std::log2(static_cast<double>(state_)); }

 private:
  uint32_t next_word() {
    if (!words_.empty()) {
      const uint32_t w = words_.back();
      words_.pop_back();
      return w;
    }
    if (underflow_ == nullptr) throw Error("rANS stream exhausted: the data ends before the images do");
    return underflow_->next();
  }

  uint64_t state_;
  std::vector<uint32_t> words_;
  RandomWords* underflow_;
};

}  // namespace vaelab::compress
