// Chat templates: ChatML, Gemma, Llama 2 / Mistral [INST] (tokenizer.h). ChatML:
//   [<|im_start|>system\n{default system}<|im_end|>\n]   when the first message is not "system"
//   <|im_start|>{role}\n{content}<|im_end|>\n            per message
//   <|im_start|>assistant\n                              when add_generation_prompt
// Recognition looks at the template text (tokenizer.chat_template, a Jinja program): ChatML-like
// when it writes <|im_start|> and <|im_end|>; a default system prompt is taken from a literal
// "<|im_start|>system\n...<|im_end|>" guarded by a test that the first role is not "system".
// Other templates fall back to ChatML with a warning for the caller (the library prints nothing).
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/tokenizer.h"

namespace hashattn {

namespace {

// Undoes the escapes of a Jinja string literal that matter here (\n, \t, \', \", \\).
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t k = 0; k < s.size(); k++) {
    if (s[k] == '\\' && k + 1 < s.size()) {
      const char c = s[++k];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[k];
    }
  }
  return out;
}

}  // namespace

chat_template chat_template_detect(const std::string& text) {
  chat_template t;
  if (text.empty()) {
    t.warning = "the model has no chat template; using ChatML";
    return t;
  }
  if (text.find("<start_of_turn>") != std::string::npos && text.find("<end_of_turn>") != std::string::npos) {
    t.format = chat_format::gemma;
    return t;
  }
  auto has = [&](const char* m) { return text.find(m) != std::string::npos; };
  if (!has("<|im_start|>") && (text.rfind("mistral", 0) == 0 || has("[INST]"))) {
    if (has("[SYSTEM_PROMPT]"))
      t.format = chat_format::mistral_v7;
    else if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]"))
      t.format = has(" [INST]") ? chat_format::mistral_v1
                 : has("\"[INST]\"") ? chat_format::mistral_v3_tekken
                                     : chat_format::mistral_v3;
    else if (has("content.strip()"))
      t.format = chat_format::llama2_sys_strip;
    else if (has("bos_token + '[INST]"))
      t.format = chat_format::llama2_sys_bos;
    else if (has("<<SYS>>"))
      t.format = chat_format::llama2_sys;
    else
      t.format = chat_format::llama2;
    return t;
  }
  const bool chatml = text.find("<|im_start|>") != std::string::npos && text.find("<|im_end|>") != std::string::npos;
  if (!chatml) {
    t.warning = "unrecognized chat template (not ChatML); using ChatML, which may not match this model";
    return t;
  }
  // Default system prompt: a literal system turn inside "{% if ... != 'system' %}".
  const std::string open = "<|im_start|>system";
  const size_t at = text.find(open);
  if (at != std::string::npos) {
    const size_t guard = text.rfind("{%", at);
    const bool guarded = guard != std::string::npos && text.find("!= 'system'", guard) < at;
    size_t body = at + open.size();
    if (text.compare(body, 2, "\\n") == 0)
      body += 2;
    else if (text.compare(body, 1, "\n") == 0)
      body += 1;
    else
      body = std::string::npos;
    const size_t end = body == std::string::npos ? std::string::npos : text.find("<|im_end|>", body);
    if (guarded && end != std::string::npos) {
      const std::string raw = text.substr(body, end - body);
      // Only a plain literal (no Jinja expression inside) counts.
      if (raw.find("{{") == std::string::npos && raw.find("{%") == std::string::npos) t.default_system = unescape(raw);
    }
  }
  return t;
}

chat_template chat_template_from_gguf(const gguf::file& f) {
  const gguf::value* v = f.find("tokenizer.chat_template");
  if (v && v->type != gguf::value_type::STRING)
    fail("chat template: tokenizer.chat_template has the wrong type", gguf::value_type_name(v->type), "str");
  return chat_template_detect(v ? v->s : std::string());
}

static std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n\r\f\v");
  if (a == std::string::npos) return {};
  return s.substr(a, s.find_last_not_of(" \t\n\r\f\v") - a + 1);
}

static std::string apply_gemma(const std::vector<chat_message>& messages, bool add_generation_prompt) {
  std::string out, system;
  for (size_t k = 0; k < messages.size(); k++) {
    const auto& m = messages[k];
    if (m.role.empty()) fail("chat template: message " + std::to_string(k) + " has an empty role");
    if (m.role == "system") {
      system += trim(m.content);
      continue;
    }
    const std::string role = m.role == "assistant" ? "model" : m.role;
    out += "<start_of_turn>" + role + "\n";
    if (!system.empty() && role != "model") {
      out += system + "\n\n";
      system.clear();
    }
    out += trim(m.content) + "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

// llama.cpp's Mistral v7 / v1 / v3 / v3-tekken and Llama 2 renderings (src/llama-chat.cpp).
static std::string apply_inst(chat_format fmt, const std::vector<chat_message>& messages) {
  std::string out;
  if (fmt == chat_format::mistral_v7) {
    for (const auto& m : messages) {
      if (m.role == "system")
        out += "[SYSTEM_PROMPT] " + m.content + "[/SYSTEM_PROMPT]";
      else if (m.role == "user")
        out += "[INST] " + m.content + "[/INST]";
      else
        out += " " + m.content + "</s>";
    }
    return out;
  }
  if (fmt == chat_format::mistral_v1 || fmt == chat_format::mistral_v3 || fmt == chat_format::mistral_v3_tekken) {
    const std::string lead = fmt == chat_format::mistral_v1 ? " " : "";
    const std::string trail = fmt == chat_format::mistral_v3_tekken ? "" : " ";
    bool inside = false;
    for (const auto& m : messages) {
      if (!inside) {
        out += lead + "[INST]" + trail;
        inside = true;
      }
      if (m.role == "system") {
        out += m.content + "\n\n";
      } else if (m.role == "user") {
        out += m.content + lead + "[/INST]";
      } else {
        out += trail + (fmt == chat_format::mistral_v3 ? trim(m.content) : m.content) + "</s>";
        inside = false;
      }
    }
    return out;
  }
  const bool sys = fmt != chat_format::llama2, bos = fmt == chat_format::llama2_sys_bos;
  const bool strip = fmt == chat_format::llama2_sys_strip;
  bool inside = true;
  out = "[INST] ";
  for (const auto& m : messages) {
    const std::string content = strip ? trim(m.content) : m.content;
    if (!inside) {
      inside = true;
      out += bos ? "<s>[INST] " : "[INST] ";
    }
    if (m.role == "system") {
      out += sys ? "<<SYS>>\n" + content + "\n<</SYS>>\n\n" : content + "\n";
    } else if (m.role == "user") {
      out += content + " [/INST]";
    } else {
      out += content + "</s>";
      inside = false;
    }
  }
  return out;
}

std::string apply_chat_template(const chat_template& t, const std::vector<chat_message>& messages,
                       bool add_generation_prompt) {
  if (t.format == chat_format::gemma) return apply_gemma(messages, add_generation_prompt);
  if (t.format != chat_format::chatml) {
    for (size_t k = 0; k < messages.size(); k++)
      if (messages[k].role.empty()) fail("chat template: message " + std::to_string(k) + " has an empty role");
    return apply_inst(t.format, messages);
  }
  std::string out;
  for (size_t k = 0; k < messages.size(); k++) {
    const auto& m = messages[k];
    if (m.role.empty()) fail("chat template: message " + std::to_string(k) + " has an empty role");
    if (k == 0 && m.role != "system" && !t.default_system.empty())
      out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace hashattn
