// The merge loop both BPE kinds share: symbols in a linked list, candidate
// pairs in a priority queue, best pair merged first (leftmost on ties).
#pragma once
#include <functional>
#include <queue>
#include <string_view>
#include <vector>

namespace ckv {

struct Symbol {
  size_t start, len;  // bytes of the word; len 0 once merged into its left
  int prev, next;     // neighbours, -1 at the ends
};

// Splits word into symbols at the given byte lengths, then merges: pair_score
// returns the priority of merging two adjacent texts (higher first) or false
// when they do not merge. Returns the surviving symbols in order.
template <class PairScore>
std::vector<Symbol> bpe_merge(std::string_view word, const std::vector<size_t>& char_lens, PairScore pair_score) {
  std::vector<Symbol> sym;
  size_t pos = 0;
  for (size_t n : char_lens) {
    int i = static_cast<int>(sym.size());
    sym.push_back({pos, n, i - 1, i + 1});
    pos += n;
  }
  if (!sym.empty()) sym.back().next = -1;

  struct Cand {
    double score;
    int left, right;
    size_t size;
    bool operator<(const Cand& o) const {  // max-heap: best score, then leftmost
      return score < o.score || (score == o.score && left > o.left);
    }
  };
  std::priority_queue<Cand> queue;
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    double score;
    std::string_view a = word.substr(sym[l].start, sym[l].len), b = word.substr(sym[r].start, sym[r].len);
    if (pair_score(a, b, score)) queue.push({score, l, r, a.size() + b.size()});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    // Stale entry: one side was merged away or grew since it was queued.
    if (l.len == 0 || r.len == 0 || l.next != c.right || l.len + r.len != c.size) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }
  std::vector<Symbol> out;
  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) out.push_back(sym[i]);
  return out;
}

}  // namespace ckv
