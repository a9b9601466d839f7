// OpenAI request parsing and response objects (serve-api.h).
#include "serve-api.h"

#include <cmath>

namespace hashattn::cli {

using nlohmann::json;

json error_body(const std::string& message, const std::string& type, const std::string& param,
                const std::string& code) {
  json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return json{{"error", e}};
}

namespace {

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw api_error(400, "'" + field + "': " + what, field, "invalid_value");
}

const json* field(const json& b, const char* name) {
  auto it = b.find(name);
  return it == b.end() || it->is_null() ? nullptr : &*it;
}

std::string get_string(const json& b, const char* name) {
  const json* v = field(b, name);
  if (!v) return {};
  if (!v->is_string()) bad(name, "expected a string");
  return v->get<std::string>();
}

// Text of a message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string content_text(const json& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) bad(where, "expected a string or an array of text parts");
  std::string s;
  for (const json& part : c) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      bad(where, "only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
    s += part["text"].get<std::string>();
  }
  return s;
}

double get_number(const json& b, const char* name, double lo, double hi, double dflt) {
  const json* v = field(b, name);
  if (!v) return dflt;
  if (!v->is_number()) bad(name, "expected a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad(name, "expected a number in [" + json(lo).dump() + ", " + json(hi).dump() + "]");
  return x;
}

}  // namespace

api_request parse_api_request(const std::string& body, bool chat) {
  json b;
  try {
    b = json::parse(body);
  } catch (const json::exception& e) {
    throw api_error(400, std::string("the body is not valid JSON: ") + e.what(), {}, "invalid_json");
  }
  if (!b.is_object()) throw api_error(400, "the body must be a JSON object", {}, "invalid_json");
  api_request r;
  r.chat = chat;
  r.model = get_string(b, "model");
  if (chat) {
    const json* m = field(b, "messages");
    if (!m) bad("messages", "required");
    if (!m->is_array() || m->empty()) bad("messages", "expected a non-empty array");
    for (size_t i = 0; i < m->size(); ++i) {
      const json& msg = (*m)[i];
      const std::string where = "messages[" + std::to_string(i) + "]";
      if (!msg.is_object()) bad(where, "expected an object");
      if (!msg.contains("role") || !msg["role"].is_string()) bad(where + ".role", "expected a string");
      const std::string role = msg["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant" && role != "developer")
        bad(where + ".role", "expected system, developer, user or assistant");
      if (!msg.contains("content")) bad(where + ".content", "required");
      r.messages.push_back({role == "developer" ? "system" : role, content_text(msg["content"], where + ".content")});
    }
  } else {
    const json* p = field(b, "prompt");
    if (!p) bad("prompt", "required");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
      r.prompt = (*p)[0].get<std::string>();
    } else if (p->is_string()) {
      r.prompt = p->get<std::string>();
    } else {
      bad("prompt", "expected a string (or an array of one string)");
    }
    if (r.prompt.empty()) bad("prompt", "empty");
  }
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = field(b, name)) {
      if (!v->is_number_integer()) bad(name, "expected an integer");
      const int64_t n = v->get<int64_t>();
      if (n < 1) bad(name, "expected >= 1, got " + std::to_string(n));
      r.max_tokens = n;
    }
  }
  r.temperature = get_number(b, "temperature", 0, 2, 1.0);
  r.top_p = get_number(b, "top_p", 0, 1, 1.0);
  if (field(b, "top_p") && r.top_p <= 0) bad("top_p", "expected a number in (0, 1]");
  if (const json* v = field(b, "seed")) {
    if (!v->is_number_integer()) bad("seed", "expected an integer");
    r.has_seed = true;
    r.seed = v->is_number_unsigned() ? v->get<uint64_t>() : (uint64_t)v->get<int64_t>();
  }
  if (const json* v = field(b, "stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const json& s : *v) {
        if (!s.is_string()) bad("stop", "expected a string or an array of strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      bad("stop", "expected a string or an array of strings");
    }
    if (r.stop.size() > 4) bad("stop", "at most 4 strings");
    for (const std::string& s : r.stop)
      if (s.empty()) bad("stop", "empty strings cannot stop anything");
  }
  if (const json* v = field(b, "stream")) {
    if (!v->is_boolean()) bad("stream", "expected true or false");
    r.stream = v->get<bool>();
  }
  if (const json* v = field(b, "n")) {
    if (!v->is_number_integer() || v->get<int64_t>() != 1) bad("n", "only n = 1 is supported");
  }
  if (const json* v = field(b, "ignore_eos")) {
    if (!v->is_boolean()) bad("ignore_eos", "expected true or false");
    r.ignore_eos = v->get<bool>();
  }
  r.attn = get_string(b, "attn");
  if (const json* v = field(b, "density")) {
    if (v->is_string()) {
      r.density = v->get<std::string>();
    } else if (v->is_number()) {
      r.density = json(v->get<double>()).dump();
    } else {
      bad("density", "expected a string such as \"1/32\" or a number in (0, 1]");
    }
  }
  r.gqa_mode = get_string(b, "gqa_mode");
  return r;
}

json api_response(const api_request& r, const std::string& id, int64_t created, const std::string& model,
                  const api_result& res) {
  json choice = {{"index", 0}, {"finish_reason", res.finish_reason}};
  if (r.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", res.text}};
  } else {
    choice["text"] = res.text;
    choice["logprobs"] = nullptr;
  }
  return json{{"id", id},
              {"object", r.chat ? "chat.completion" : "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array({choice})},
              {"usage",
               {{"prompt_tokens", res.prompt_tokens},
                {"completion_tokens", res.completion_tokens},
                {"total_tokens", res.prompt_tokens + res.completion_tokens}}},
              {"hashattn", {{"attn", res.policy}, {"density", res.density}, {"shared_prompt_tokens", res.shared_tokens}}}};
}

json api_chunk(const api_request& r, const std::string& id, int64_t created, const std::string& model,
               const std::string& text, const std::string& finish_reason, bool first) {
  json choice = {{"index", 0}, {"finish_reason", nullptr}};
  if (!finish_reason.empty()) choice["finish_reason"] = finish_reason;
  if (r.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  return json{{"id", id},
              {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array({choice})}};
}

}  // namespace hashattn::cli
