#include "eval/ruler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "eval/niah_probe.h"
#include "eval/rng.h"
#include "util/error.h"

namespace ckv::eval {

namespace {

constexpr const char* kAdjectives[] = {
    "able",    "acid",    "angry",   "ashamed", "awful",   "bad",     "bitter",  "black",   "blue",    "boiling",
    "brave",   "bright",  "broken",  "brown",   "calm",    "cheap",   "chilly",  "clean",   "clever",  "cold",
    "cool",    "crazy",   "cruel",   "curious", "damp",    "dark",    "dear",    "deep",    "dirty",   "dry",
    "dull",    "eager",   "early",   "easy",    "elegant", "empty",   "fair",    "false",   "fancy",   "fast",
    "fat",     "fierce",  "flat",    "fluffy",  "foolish", "fragile", "free",    "fresh",   "friendly", "funny",
    "gentle",  "giant",   "glad",    "golden",  "good",    "grand",   "gray",    "great",   "green",   "happy",
    "hard",    "heavy",   "helpful", "hollow",  "honest",  "hot",     "huge",    "humble",  "hungry",  "icy",
    "jolly",   "kind",    "large",   "late",    "lazy",    "light",   "little",  "lively",  "lonely",  "long",
    "loud",    "lucky",   "mad",     "massive", "mellow",  "merry",   "mighty",  "modern",  "narrow",  "nasty",
    "neat",    "nervous", "new",     "nice",    "noisy",   "odd",     "old",     "orange",  "pale",    "plain",
    "polite",  "poor",    "proud",   "purple",  "quick",   "quiet",   "rapid",   "rare",    "red",     "rich",
    "rough",   "round",   "rude",    "sad",     "safe",    "salty",   "scary",   "sharp",   "shiny",   "short",
    "shy",     "silent",  "silly",   "simple",  "slow",    "small",   "smooth",  "soft",    "sour",    "spicy",
    "steep",   "sticky",  "strange", "strong",  "sweet",   "swift",   "tall",    "tame",    "tender",  "thick",
    "thin",    "tidy",    "tiny",    "tough",   "ugly",    "vast",    "warm",    "weak",    "wet",     "white",
    "wide",    "wild",    "wise",    "witty",   "wooden",  "yellow",  "young",   "zany",    "zealous", "zesty",
};

constexpr const char* kNouns[] = {
    "actor",    "airport",  "anchor",   "apple",    "arrow",    "badge",    "bakery",   "ball",     "banana",
    "basket",   "beach",    "bear",     "bell",     "bicycle",  "bird",     "blanket",  "boat",     "book",
    "bottle",   "bridge",   "brush",    "bucket",   "butter",   "button",   "cabin",    "cake",     "camera",
    "candle",   "canyon",   "carpet",   "castle",   "cat",      "chair",    "cheese",   "cherry",   "church",
    "circle",   "cloud",    "clock",    "coat",     "coffee",   "coin",     "comet",    "cookie",   "cottage",
    "crayon",   "crown",    "cup",      "curtain",  "desert",   "diamond",  "dinner",   "doctor",   "dog",
    "dolphin",  "door",     "dragon",   "drum",     "eagle",    "engine",   "feather",  "fence",    "field",
    "finger",   "flag",     "flower",   "forest",   "fountain", "fox",      "garden",   "ghost",    "giraffe",
    "glass",    "glove",    "guitar",   "hammer",   "harbor",   "hat",      "helmet",   "horse",    "hotel",
    "island",   "jacket",   "jungle",   "kettle",   "key",      "kitchen",  "kite",     "ladder",   "lake",
    "lamp",     "lemon",    "letter",   "library",  "lion",     "magnet",   "map",      "market",   "meadow",
    "mirror",   "monkey",   "mountain", "mouse",    "needle",   "nest",     "notebook", "ocean",    "orchard",
    "owl",      "painter",  "palace",   "pancake",  "parrot",   "pencil",   "piano",    "pillow",   "pirate",
    "planet",   "pocket",   "pond",     "potato",   "pumpkin",  "puzzle",   "rabbit",   "rainbow",  "river",
    "robot",    "rocket",   "saddle",   "sailor",   "sandwich", "school",   "shadow",   "sheep",    "shell",
    "ship",     "shoe",     "singer",   "spider",   "spoon",    "squirrel", "star",     "statue",   "stone",
    "storm",    "street",   "sugar",    "sunset",   "swan",     "table",    "teacher",  "temple",   "tiger",
    "tomato",   "tower",    "train",    "treasure", "tree",     "trumpet",  "tunnel",   "turtle",   "umbrella",
    "valley",   "violin",   "wagon",    "wallet",   "whale",    "window",   "wizard",   "wolf",     "zebra",
};

constexpr uint64_t kNA = sizeof kAdjectives / sizeof *kAdjectives;
constexpr uint64_t kNN = sizeof kNouns / sizeof *kNouns;

const char* kNoise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

std::string random_number(Rng& r) { return std::to_string(r.range(1000000, 9999999)); }  // 7 digits

std::string random_uuid(Rng& r) {
  const uint64_t hi = r.next(), lo = r.next();
  char b[40];
  std::snprintf(b, sizeof b, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xfff),
                static_cast<unsigned>(0x8000 | ((lo >> 48) & 0x3fff)),
                static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return b;
}

enum class Kind { Words, Numbers, Uuids };
enum class Hay { Essay, Repeat, Needle };

std::string random_of(Kind k, Rng& r) {
  switch (k) {
    case Kind::Words: return ruler_word(r.below(ruler_word_count()));
    case Kind::Numbers: return random_number(r);
    case Kind::Uuids: return random_uuid(r);
  }
  return "";
}

// A task's text before the chat template: body, then the answer prefix the
// model continues from.
struct Built {
  std::string body, answer_prefix;
  std::vector<std::string> refs;
  std::optional<double> depth;
};

struct NiahCfg {
  Hay hay;
  Kind k, v;
  int n_k = 1, n_v = 1, n_q = 1;
};

const std::map<std::string, NiahCfg>& niah_cfgs() {
  static const std::map<std::string, NiahCfg> m = {
      {"niah_single_1", {Hay::Repeat, Kind::Words, Kind::Numbers}},
      {"niah_single_2", {Hay::Essay, Kind::Words, Kind::Numbers}},
      {"niah_single_3", {Hay::Essay, Kind::Words, Kind::Uuids}},
      {"niah_multikey_1", {Hay::Essay, Kind::Words, Kind::Numbers, 4, 1, 1}},
      {"niah_multikey_2", {Hay::Needle, Kind::Words, Kind::Numbers}},
      {"niah_multikey_3", {Hay::Needle, Kind::Uuids, Kind::Uuids}},
      {"niah_multivalue", {Hay::Essay, Kind::Words, Kind::Numbers, 1, 4, 1}},
      {"niah_multiquery", {Hay::Essay, Kind::Words, Kind::Numbers, 4, 1, 4}},
  };
  return m;
}

// RULER's 40 insertion depths: round(linspace(0, 100, 40)).
int depth_percent(int i) { return static_cast<int>(std::lround(100.0 * i / 39.0)); }

// Sentences of a text: pieces ending at ". ", "? " or "! " (the space dropped).
std::vector<std::string> sentences(const std::string& t) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i + 1 < t.size(); ++i)
    if ((t[i] == '.' || t[i] == '?' || t[i] == '!') && t[i + 1] == ' ') {
      out.push_back(t.substr(start, i + 1 - start));
      start = i + 2;
    }
  if (start < t.size()) out.push_back(t.substr(start));
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

Built build_niah(const NiahCfg& c, int n, Rng& r, const Tokenizer& tok, const Haystack& hay) {
  const std::string tv = c.v == Kind::Uuids ? "uuids" : c.v == Kind::Words ? "words" : "numbers";
  std::vector<std::string> keys, needles;
  std::vector<std::vector<std::string>> values;
  std::set<std::string> used;
  for (int i = 0; i < c.n_k; ++i) {
    std::string k;
    do k = random_of(c.k, r);
    while (!used.insert(k).second);
    keys.push_back(k);
    values.emplace_back();
    for (int j = 0; j < c.n_v; ++j) {
      values.back().push_back(random_of(c.v, r));
      needles.push_back("One of the special magic " + tv + " for " + k + " is: " + values.back().back() + ".");
    }
  }
  r.shuffle(needles);
  Built b;
  std::string context;
  if (c.hay == Hay::Essay) {
    std::vector<int> ids(hay.tokens.begin(), hay.tokens.begin() + std::min<size_t>(n, hay.tokens.size()));
    std::vector<std::string> sents = sentences(tok.decode(ids));
    std::vector<int> pos;
    std::vector<int> picks = r.sample(40, static_cast<int>(needles.size()));
    for (int p : picks) pos.push_back(static_cast<int>(sents.size() * depth_percent(p) / 100));
    if (needles.size() == 1) b.depth = depth_percent(picks[0]) / 100.0;
    std::sort(pos.begin(), pos.end());
    std::vector<std::string> parts;
    int last = 0;
    for (size_t i = 0; i < needles.size(); ++i) {
      std::vector<std::string> seg(sents.begin() + last, sents.begin() + pos[i]);
      if (!seg.empty()) parts.push_back(join(seg, " "));
      parts.push_back(needles[i]);
      last = pos[i];
    }
    std::vector<std::string> seg(sents.begin() + last, sents.end());
    if (!seg.empty()) parts.push_back(join(seg, " "));
    context = join(parts, " ");
  } else {
    std::vector<std::string> lines;
    for (int i = 0; i < n; ++i) {
      if (c.hay == Hay::Repeat) {
        lines.push_back(kNoise);
      } else {
        std::string k;
        do k = random_of(c.k, r);
        while (used.count(k));
        lines.push_back("One of the special magic " + tv + " for " + k + " is: " + random_of(c.v, r) + ".");
      }
    }
    std::vector<int> at = r.sample(n, static_cast<int>(needles.size()));
    at.resize(needles.size(), 0);  // more needles than lines: the rest go first
    std::sort(at.begin(), at.end(), std::greater<int>());
    for (size_t i = 0; i < at.size(); ++i) lines.insert(lines.begin() + at[i], needles[i]);
    if (needles.size() == 1 && n > 0) b.depth = static_cast<double>(at[0]) / n;
    context = join(lines, "\n");
  }
  std::vector<int> q = r.sample(c.n_k, c.n_q);
  std::vector<std::string> qk;
  for (int i : q) {
    qk.push_back(keys[i]);
    for (auto& v : values[i]) b.refs.push_back(v);
  }
  std::string query = qk.size() > 1 ? join(std::vector<std::string>(qk.begin(), qk.end() - 1), ", ") + ", and " + qk.back()
                                    : qk[0];
  if (c.n_q * c.n_v == 1) {
    const std::string t1 = tv.substr(0, tv.size() - 1);
    b.body = "A special magic " + t1 + " is hidden within the following text. Make sure to memorize it. I will quiz you "
             "about the " + t1 + " afterwards.\n" + context + "\nWhat is the special magic " + t1 + " for " + query +
             " mentioned in the provided text?";
    b.answer_prefix = " The special magic " + t1 + " for " + query + " mentioned in the provided text is";
  } else {
    b.body = "Some special magic " + tv + " are hidden within the following text. Make sure to memorize it. I will quiz "
             "you about the " + tv + " afterwards.\n" + context + "\nWhat are all the special magic " + tv + " for " +
             query + " mentioned in the provided text?";
    b.answer_prefix = " The special magic " + tv + " for " + query + " mentioned in the provided text are";
  }
  return b;
}

// Variable tracking: one chain VAR X0 = value, VAR X1 = VAR X0, ... (4 hops).
Built build_vt_part(int n, Rng& r, int name_len) {
  const int hops = 4;
  std::vector<std::string> vars;
  std::set<std::string> used;
  while (static_cast<int>(vars.size()) < hops + 1) {
    std::string v;
    for (int i = 0; i < name_len; ++i) v += static_cast<char>('A' + r.below(26));
    if (used.insert(v).second) vars.push_back(v);
  }
  const std::string value = std::to_string(r.range(10000, 99998));
  std::vector<std::string> chain{"VAR " + vars[0] + " = " + value};
  for (int j = 0; j < hops; ++j) chain.push_back("VAR " + vars[j + 1] + " = VAR " + vars[j] + " ");
  std::vector<std::string> sents(n, std::string(kNoise) + "\n");
  std::vector<int> at;  // insertion points among the n noise lines
  for (size_t j = 0; j < chain.size(); ++j) at.push_back(static_cast<int>(r.below(static_cast<uint64_t>(n) + 1)));
  std::sort(at.begin(), at.end());
  for (size_t j = 0; j < chain.size(); ++j) sents.insert(sents.begin() + std::min<size_t>(at[j] + j, sents.size()), chain[j]);
  std::string context = join(sents, " ");
  for (size_t p; (p = context.find(". \n")) != std::string::npos;) context.replace(p, 3, ".\n");
  Built b;
  b.body = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" + context +
           "\nQuestion: Find all variables that are assigned the value " + value + " in the text above.";
  b.answer_prefix = " Answer: According to the chain(s) of variable assignment in the text above, " +
                    std::to_string(hops + 1) + " variables are assigned the value " + value + ", they are: ";
  b.refs = vars;
  return b;
}

Built build_vt(int n, Rng& r) {
  Built ex = build_vt_part(2, r, 3);  // one worked example first, as RULER does
  Built b = build_vt_part(n, r, 5);
  b.body = ex.body + ex.answer_prefix + join(ex.refs, " ") + "\n\n" + b.body;
  return b;
}

// Common words: 10 words repeated often, the others rarely, as a numbered list.
const std::vector<std::string>& haystack_words(const Haystack& hay) {
  // Cached by content: the size search builds many prompts from one haystack.
  static std::map<std::pair<size_t, size_t>, std::vector<std::string>> cache;
  const std::pair<size_t, size_t> key{std::hash<std::string>{}(hay.text), hay.text.size()};
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  std::set<std::string> s;
  std::string cur;
  for (char ch : hay.text + " ") {
    if (ch >= 'a' && ch <= 'z') {
      cur += ch;
    } else {
      if (cur.size() >= 4 && cur.size() <= 10 && !(ch >= 'A' && ch <= 'Z')) s.insert(cur);
      cur.clear();
    }
  }
  std::vector<std::string> v(s.begin(), s.end());
  Rng r(42);
  r.shuffle(v);
  return cache[key] = v;
}

std::string numbered(const std::vector<std::string>& w) {
  std::string s;
  for (size_t i = 0; i < w.size(); ++i) s += (i ? " " : "") + std::to_string(i + 1) + ". " + w[i];
  return s;
}

Built cwe_part(const std::vector<std::string>& words, int n, int rep_c, int rep_u, Rng& r) {
  const int num_cw = 10;
  std::vector<int> pick = r.sample(static_cast<int>(words.size()), n);
  std::vector<std::string> list;
  Built b;
  for (size_t i = 0; i < pick.size(); ++i) {
    const bool common = static_cast<int>(i) < num_cw;
    if (common) b.refs.push_back(words[pick[i]]);
    for (int k = 0; k < (common ? rep_c : rep_u); ++k) list.push_back(words[pick[i]]);
  }
  r.shuffle(list);
  b.body = "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones "
           "that appear most often.\n" + numbered(list) + "\nQuestion: What are the 10 most common words in the above "
           "list?";
  b.answer_prefix = " Answer: The top 10 words that appear most often in the list are:";
  return b;
}

Built build_cwe(int n, int length, Rng& r, const Haystack& hay) {
  const auto& words = haystack_words(hay);
  const bool big = length >= 4096;
  Built ex = cwe_part(words, big ? 40 : 20, big ? 10 : 3, big ? 3 : 1, r);
  Built b = cwe_part(words, n, big ? 30 : 6, big ? 3 : 1, r);
  b.body = ex.body + ex.answer_prefix + " " + numbered(ex.refs) + "\n" + b.body;
  return b;
}

// Frequent words: coded 6-letter words with zeta(2) frequencies; the most
// frequent one is "..." (noise), the answer is the next three.
Built build_fwe(int n, int length, Rng& r) {
  const int vocab_size = std::max(8, length / 50);
  std::set<std::string> s;
  while (static_cast<int>(s.size()) < vocab_size) {
    std::string w;
    for (int i = 0; i < 6; ++i) w += static_cast<char>('a' + r.below(26));
    s.insert(w);
  }
  std::vector<std::string> vocab(s.begin(), s.end());
  r.shuffle(vocab);
  vocab[0] = "...";
  const double alpha = 2.0, zeta2 = M_PI * M_PI / 6.0;
  std::vector<std::string> text;
  for (int k = 1; k <= vocab_size; ++k) {
    const int cnt = static_cast<int>(n * std::pow(k, -alpha) / zeta2);
    for (int i = 0; i < cnt; ++i) text.push_back(vocab[k - 1]);
  }
  r.shuffle(text);
  Built b;
  b.body = "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
           "appeared coded words. " + join(text, " ") + "\nQuestion: Do not provide any explanation. Please ignore the "
           "dots '....'. What are the three most frequently appeared words in the above coded text?";
  b.answer_prefix = " Answer: According to the coded text above, the three most frequently appeared words are:";
  b.refs = {vocab[1], vocab[2], vocab[3]};
  return b;
}

int max_new_of(const std::string& task) {
  if (task == "vt") return 30;
  if (task == "cwe") return 120;
  if (task == "fwe") return 50;
  return 128;
}

}  // namespace

std::string ruler_word(uint64_t i) { return std::string(kAdjectives[(i / kNN) % kNA]) + "-" + kNouns[i % kNN]; }
uint64_t ruler_word_count() { return kNA * kNN; }

const std::vector<std::string>& ruler_tasks() {
  static const std::vector<std::string> t = {"niah_single_1",   "niah_single_2",   "niah_single_3",
                                             "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
                                             "niah_multivalue", "niah_multiquery", "vt",
                                             "cwe",             "fwe"};
  return t;
}

void check_ruler_tasks(const std::vector<std::string>& tasks) {
  if (tasks.empty()) throw Error("--tasks is empty");
  const auto& known = ruler_tasks();
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (std::find(known.begin(), known.end(), tasks[i]) == known.end())
      throw Error("--tasks: unknown task '" + tasks[i] + "' (known: " + join(known, ", ") + ")");
    if (std::count(tasks.begin(), tasks.end(), tasks[i]) > 1) throw Error("--tasks: '" + tasks[i] + "' is given twice");
  }
}

RulerSample ruler_sample(const Tokenizer& tok, const Haystack& hay, const std::string& task, int length, int index,
                         uint64_t seed, const ChatTemplate* chat) {
  check_ruler_tasks({task});
  const auto& known = ruler_tasks();
  const uint64_t task_id = static_cast<uint64_t>(std::find(known.begin(), known.end(), task) - known.begin());
  const uint64_t s = mix_seed(seed, {task_id, static_cast<uint64_t>(index), static_cast<uint64_t>(length)});
  // The same draws for every size, so the search below only changes the size.
  auto build = [&](int n) {
    Rng r(s);
    if (auto it = niah_cfgs().find(task); it != niah_cfgs().end()) return build_niah(it->second, n, r, tok, hay);
    if (task == "vt") return build_vt(n, r);
    if (task == "cwe") return build_cwe(n, length, r, hay);
    return build_fwe(n, length, r);
  };
  auto text_of = [&](const Built& b) {
    return chat ? chat->render({{"user", b.body}}, true) + b.answer_prefix : b.body + b.answer_prefix;
  };
  auto fits = [&](int n, Built& b, std::vector<int>& ids) {
    b = build(n);
    ids = prompt_tokens(tok, text_of(b), chat != nullptr);
    return static_cast<int>(ids.size()) <= length;
  };
  // Largest size that fits: double, then bisect.
  int cap = static_cast<int>(hay.tokens.size());
  if (task == "cwe") cap = static_cast<int>(haystack_words(hay).size());
  if (niah_cfgs().count(task) && niah_cfgs().at(task).hay != Hay::Essay) cap = length;
  if (task == "vt") cap = length;
  if (task == "fwe") cap = 8 * length;
  const int min_n = task == "cwe" ? 10 : 1;
  Built b;
  std::vector<int> ids;
  if (!fits(min_n, b, ids))
    throw Error("--lengths: " + std::to_string(length) + " tokens is too short for RULER task " + task + " (its smallest "
                "prompt has " + std::to_string(ids.size()) + " tokens)");
  int lo = min_n, hi = min_n;
  while (hi < cap) {
    int next = std::min(cap, hi * 2);
    Built t;
    std::vector<int> ti;
    if (!fits(next, t, ti)) {
      hi = next;
      break;
    }
    lo = hi = next;
  }
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    Built t;
    std::vector<int> ti;
    (fits(mid, t, ti) ? lo : hi) = mid;
  }
  fits(lo, b, ids);
  RulerSample out;
  out.task = task;
  out.index = index;
  out.length = length;
  out.prompt = text_of(b);
  out.tokens = std::move(ids);
  if (chat) {  // the template's suffix and the answer prefix follow the user message
    size_t user_end = 0;
    const size_t rendered = chat->render({{"user", b.body}}, true, &user_end).size();
    out.user_suffix = tail_tokens(tok, out.tokens, rendered + b.answer_prefix.size() - user_end);
  }
  out.refs = b.refs;
  out.max_new = max_new_of(task);
  out.depth = b.depth;
  return out;
}

}  // namespace ckv::eval
