// The OpenAI-compatible surface of `hashattn serve`: request bodies of /v1/chat/completions and
// /v1/completions parsed and checked field by field (api_error names the field), and the response
// objects (whole, and the chunks of a stream). No HTTP here (serve-http.cpp).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "hashattn/tokenizer.h"

namespace hashattn::cli {

// An error answered as {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct api_error : std::runtime_error {
  int status;
  std::string type, param, code;
  api_error(int st, const std::string& msg, const std::string& prm = {}, const std::string& cd = {},
            const std::string& tp = "invalid_request_error")
      : std::runtime_error(msg), status(st), type(tp), param(prm), code(cd) {}
};
nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param,
                          const std::string& code);

struct api_request {
  bool chat = false;
  std::vector<chat_message> messages;  // chat
  std::string prompt;                  // completions
  std::string model;                   // empty: not given
  int64_t max_tokens = 0;              // 0: not given (the rest of the context)
  double temperature = 1.0, top_p = 1.0;
  bool has_seed = false;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool stream = false;
  bool ignore_eos = false;
  // hashattn's extra fields: the attention policy of this request (empty: the server's)
  std::string attn, density, gqa_mode;
};
// Parses and checks a body; throws api_error (400) naming the field.
api_request parse_api_request(const std::string& body, bool chat);

struct api_result {
  std::string text, finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0, shared_tokens = 0;
  double density = 1;
  std::string policy;
};
// The whole response object.
nlohmann::json api_response(const api_request& r, const std::string& id, int64_t created, const std::string& model,
                            const api_result& res);
// One chunk of a stream: text (delta) and/or finish_reason (empty: null); `first` carries the role.
nlohmann::json api_chunk(const api_request& r, const std::string& id, int64_t created, const std::string& model,
                         const std::string& text, const std::string& finish_reason, bool first);

}  // namespace hashattn::cli
