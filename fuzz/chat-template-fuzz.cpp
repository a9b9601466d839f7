// Fuzz target "chat-template": input = template text, then NUL-separated fields: a flags byte
// field (bit 0 add_generation_prompt), then role / content pairs. Runs chat_template_detect on the
// template and apply_chat_template on the messages. Invariants: a recognized template (ChatML, Gemma,
// [INST]) has no warning, an unrecognized one falls back to ChatML with one; ChatML output holds every
// message and ends with the generation prompt when asked; Gemma and [INST] output holds the trimmed
// content of every non-system message (and Gemma's ends with its generation prompt when asked); the
// output (when it is UTF-8) encodes with the synthetic tokenizer's special tokens parsed.
#include <string>
#include <vector>

#include "fuzz-entry.h"
#include "hashattn/error.h"
#include "hashattn/tokenizer.h"

namespace hashattn::fuzz {

int chat_template_one(const uint8_t* data, size_t size) {
  std::vector<std::string> fields;
  std::string cur;
  for (size_t k = 0; k < size; k++) {
    if (data[k] == 0) {
      fields.push_back(cur);
      cur.clear();
    } else {
      cur += (char)data[k];
    }
  }
  fields.push_back(cur);
  const chat_template t = chat_template_detect(fields[0]);
  const bool chatml = fields[0].find("<|im_start|>") != std::string::npos &&
                      fields[0].find("<|im_end|>") != std::string::npos;
  const bool other = t.format != chat_format::chatml;
  HASHATTN_FUZZ_CHECK((chatml || other) == t.warning.empty());
  HASHATTN_FUZZ_CHECK((chatml && !other) || t.default_system.empty());
  const bool gen = fields.size() > 1 && !fields[1].empty() && (fields[1][0] & 1);
  std::vector<chat_message> msgs;
  for (size_t k = 2; k + 1 < fields.size() && msgs.size() < 16; k += 2) msgs.push_back({fields[k], fields[k + 1]});
  std::string out;
  try {
    out = apply_chat_template(t, msgs, gen);
  } catch (const hashattn::error&) {
    bool empty_role = false;
    for (const auto& m : msgs) empty_role = empty_role || m.role.empty();
    HASHATTN_FUZZ_CHECK(empty_role);
    return 0;
  }
  if (other) {
    auto trim = [](const std::string& s) {
      const size_t a = s.find_first_not_of(" \t\n\r\f\v");
      return a == std::string::npos ? std::string() : s.substr(a, s.find_last_not_of(" \t\n\r\f\v") - a + 1);
    };
    for (const auto& m : msgs)
      if (m.role != "system") HASHATTN_FUZZ_CHECK(out.find(trim(m.content)) != std::string::npos);
    const std::string gp = "<start_of_turn>model\n";
    if (gen && t.format == chat_format::gemma)
      HASHATTN_FUZZ_CHECK(out.size() >= gp.size() && out.compare(out.size() - gp.size(), gp.size(), gp) == 0);
    return 0;
  }
  size_t at = 0;
  for (const auto& m : msgs) {
    const size_t hit = out.find("<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n", at);
    HASHATTN_FUZZ_CHECK(hit != std::string::npos);
    at = hit + 1;
  }
  const std::string prompt = "<|im_start|>assistant\n";
  if (gen) HASHATTN_FUZZ_CHECK(out.size() >= prompt.size() && out.compare(out.size() - prompt.size(), prompt.size(), prompt) == 0);
  if (utf8_find_invalid(out) == std::string::npos) {
    // The synthetic vocabulary of the tokenizer target (entry 0: smollm pre-tokenizer).
    static const uint8_t flags[1] = {0x10};  // parse_special
    std::string in((const char*)flags, 1);
    in += out.substr(0, 4096);
    tokenizer_one((const uint8_t*)in.data(), in.size());
  }
  return 0;
}

}  // namespace hashattn::fuzz
