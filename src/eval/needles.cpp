#include "eval/needles.h"

#include <sstream>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/jsonl.h"

namespace ckv::eval {

namespace {

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string string_field(const nlohmann::json& o, const char* key, const std::string& where) {
  auto it = o.find(key);
  if (it == o.end()) throw Error(where + ": missing field \"" + key + "\"");
  if (!it->is_string()) throw Error(where + ": field \"" + key + "\" must be a string, found " + it->dump());
  std::string s = it->get<std::string>();
  if (s.find_first_not_of(" \t\r\n") == std::string::npos) throw Error(where + ": field \"" + key + "\" is empty");
  return s;
}

}  // namespace

std::vector<Needle> read_needles(const std::string& path) {
  std::vector<Needle> out;
  for_each_jsonl_object(path, "needle file", "a JSON object with needle, question and answer",
                        [&](const nlohmann::json& o, const std::string& where) {
    Needle n;
    n.needle = string_field(o, "needle", where);
    n.question = string_field(o, "question", where);
    n.answer = string_field(o, o.contains("answer") ? "answer" : "real_needle", where);
    if (lower(n.needle).find(lower(n.answer)) == std::string::npos)
      throw Error(where + ": the answer \"" + n.answer + "\" is not inside the needle \"" + n.needle + "\"");
    out.push_back(std::move(n));
  });
  if (out.empty()) throw file_error(path, "holds no needle (one JSON object a line: needle, question, answer)");
  return out;
}

// Invented facts that appear in no essay of the usual haystack. Each answer
// starts with a word that is one token with or without its leading space and
// has 11 or more distinct tokens, so that its span is found in the prompt
// (DESIGN.md 2.4 step 4 wants > 90% of the answer's token set, and the answer
// tokenized alone lacks the leading space its first word has in the prompt).
const std::vector<Needle>& calibration_needles() {
  static const std::vector<Needle> set = {
      {"The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
       "What is the best thing to do in San Francisco?", "eat a sandwich and sit in Dolores Park on a sunny day"},
      {"The secret ingredient in Grandma Rosa's tomato sauce is a pinch of smoked paprika mixed with a spoonful of "
       "wildflower honey.",
       "What is the secret ingredient in Grandma Rosa's tomato sauce?",
       "a pinch of smoked paprika mixed with a spoonful of wildflower honey"},
      {"The lantern festival in the mountain village of Eldham is held every year on the first Saturday after the "
       "river ice melts away.",
       "When is the lantern festival in the mountain village of Eldham held?",
       "every year on the first Saturday after the river ice melts away"},
      {"The old clockmaker Tobias Wren hid his fortune inside a hollow oak tree behind the chapel at the edge of the "
       "village.",
       "Where did the old clockmaker Tobias Wren hide his fortune?",
       "inside a hollow oak tree behind the chapel at the edge of the village"},
      {"The research ship Aurora was named after the green northern lights that the crew saw on their very first "
       "night at sea.",
       "Why was the research ship Aurora given its name?",
       "named after the green northern lights that the crew saw on their very first night at sea"},
      {"The favourite food of Captain Mirelle's parrot is a bowl of roasted sunflower seeds dipped in mango juice "
       "every Sunday morning.",
       "What is the favourite food of Captain Mirelle's parrot?",
       "a bowl of roasted sunflower seeds dipped in mango juice every Sunday morning"},
  };
  return set;
}

const std::vector<Needle>& evaluation_needles() {
  static const std::vector<Needle> set = {
      {"The password to the lighthouse on Corvin Island is written on a blue tile beneath the spiral staircase near "
       "the lamp room.",
       "Where is the password to the lighthouse on Corvin Island written?",
       "on a blue tile beneath the spiral staircase near the lamp room"},
      {"The best way to calm the stubborn mule of Pedro Alvarez is to sing him an old sea shanty while brushing his "
       "mane.",
       "What is the best way to calm the stubborn mule of Pedro Alvarez?",
       "to sing him an old sea shanty while brushing his mane"},
      {"The winner of the first chess tournament held on the moon base Selene was a retired botanist named Ingrid "
       "Halvorsen from Bergen.",
       "Who won the first chess tournament held on the moon base Selene?",
       "a retired botanist named Ingrid Halvorsen from Bergen"},
      {"To open the library vault in the city of Marrowind, say the words pumpkin lullaby, whispered three times at "
       "midnight.",
       "How do you open the library vault in the city of Marrowind?",
       "say the words pumpkin lullaby, whispered three times at midnight"},
      {"Professor Okafor keeps her spare laboratory keys in a green teapot on the top shelf of the staff kitchen.",
       "Where does Professor Okafor keep her spare laboratory keys?",
       "in a green teapot on the top shelf of the staff kitchen"},
      {"The first song ever played on Radio Kestrel was a cheerful waltz about a baker who fell in love with the "
       "moon.",
       "What was the first song ever played on Radio Kestrel?",
       "a cheerful waltz about a baker who fell in love with the moon"},
  };
  return set;
}

std::string needles_jsonl(const std::vector<Needle>& set) {
  std::ostringstream ss;
  for (const Needle& n : set)
    ss << nlohmann::json{{"needle", n.needle}, {"question", n.question}, {"answer", n.answer}}.dump() << "\n";
  return ss.str();
}

}  // namespace ckv::eval
