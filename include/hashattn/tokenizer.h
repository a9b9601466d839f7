// Byte-level BPE tokenizer (GGUF tokenizer.ggml.model = "gpt2"), SentencePiece BPE ("llama": Llama 2,
// Mistral 7B, Gemma 3; model/tokenizer-spm.h) and chat templates.
// SentencePiece: no pre-tokenizer; each text span between special tokens is prefixed with a space when
// add_space_prefix and it follows a special token or starts the text, spaces become U+2581, and the
// span is merged by token score with byte fallback; pieces turn U+2581 back into spaces and <0xXX>
// tokens into their byte.
// encode: special tokens are cut out of the text first (longest first; control tokens only when
// parse_special), each remaining span is split by the pre-tokenizer's regexes (PCRE2, UTF + UCP),
// each piece is mapped byte -> printable code point (GPT-2 byte map) and merged by BPE rank.
// decode / token_to_piece return raw bytes: a piece may end inside a UTF-8 sequence; streaming
// callers keep the tail until utf8_complete_prefix says it is whole.
// Pre-tokenizers: "smollm" (and the llama.cpp names that share it: starcoder, refact, command-r,
// codeshell, exaone, minerva), "llama-bpe" (llama3), "qwen2", "gpt-2" (gpt2), "default".
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hashattn {

namespace gguf {
class file;
class writer;
}

// ggml token types (tokenizer.ggml.token_type).
enum class token_type : int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6,
};

// Everything a tokenizer is built from; from_gguf fills it from the tokenizer.ggml.* keys.
struct tokenizer_vocab {
  std::string model = "gpt2";              // "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE)
  std::string pre = "default";             // pre-tokenizer name
  std::vector<std::string> tokens;         // token texts (byte-mapped)
  std::vector<int32_t> types;              // token_type per token; empty = all normal
  std::vector<std::string> merges;         // "left right", by rank (gpt2)
  std::vector<float> scores;               // per token (llama; empty: all 0)
  bool add_space_prefix = true;            // llama: a space before the text (tokenizer.ggml.add_space_prefix)
  int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;
  bool add_bos = false, add_eos = false;
};

class tokenizer {
 public:
  static std::unique_ptr<tokenizer> from_gguf(const gguf::file& f);
  static std::unique_ptr<tokenizer> from_vocab(tokenizer_vocab v);
  ~tokenizer();
  tokenizer(const tokenizer&) = delete;
  tokenizer& operator=(const tokenizer&) = delete;

  // text must be valid UTF-8 (else hashattn::error naming the byte offset; see utf8_sanitize).
  // add_special: prepend BOS / append EOS as the vocabulary asks (add_bos / add_eos).
  // parse_special: control tokens written in the text (e.g. "<|im_start|>") become their ids;
  // otherwise they are tokenized as plain text. User-defined tokens are always matched.
  std::vector<int32_t> encode(const std::string& text, bool add_special = true, bool parse_special = false) const;
  // Raw bytes of the tokens; control tokens render their text when render_special, else nothing.
  std::string decode(const std::vector<int32_t>& ids, bool render_special = true) const;
  std::string token_to_piece(int32_t id, bool render_special = true) const;

  int32_t n_vocab() const;
  const std::string& token_text(int32_t id) const;  // as stored (byte-mapped)
  token_type type(int32_t id) const;
  int32_t find_token(const std::string& text) const;  // by stored text; -1 when absent
  int32_t bos() const;
  int32_t eos() const;
  bool add_bos() const;
  bool is_eog(int32_t id) const;  // eos, eot, and control tokens <|im_end|>, <|eot_id|>, <|endoftext|>, ...
  const std::string& pre() const;

 private:
  tokenizer();
  static std::unique_ptr<tokenizer> from_gguf_checked(const gguf::file& f);
  struct impl;
  std::unique_ptr<impl> p_;
};

// A minimal valid vocabulary of n_vocab tokens (>= 258), for models made without a real one
// (`hashattn make-model`): the 256 byte tokens (ids 0..255, byte b -> id b; no merges, so any text
// encodes byte by byte), normal filler tokens "<|filler_ID|>" that encode never produces, and two
// control tokens at the end: "<|begin_of_text|>" (bos, added) and "<|end_of_text|>" (eos).
tokenizer_vocab tokenizer_vocab_bytes(int64_t n_vocab);
// Writes v as the tokenizer.ggml.* metadata that tokenizer::from_gguf reads back.
void tokenizer_vocab_write(const tokenizer_vocab& v, gguf::writer& w);

// Length of the longest prefix of s that does not end inside a UTF-8 sequence (for streaming).
size_t utf8_complete_prefix(const std::string& s);
// Replaces each invalid UTF-8 sequence by U+FFFD (as llama.cpp does before tokenizing).
std::string utf8_sanitize(const std::string& s);
// Offset of the first invalid UTF-8 byte, or std::string::npos when s is valid.
size_t utf8_find_invalid(const std::string& s);

// ---- chat templates ----
struct chat_message {
  std::string role;     // "system", "user", "assistant", ...
  std::string content;
};

// llama2*: [INST] turns (Mistral 7B Instruct v0.1 / v0.2, Llama 2); mistral_*: Mistral's official
// v1 / v3 / v3-tekken / v7 templates; rendered as llama.cpp's built-in formats of the same names.
enum class chat_format {
  chatml, gemma, llama2, llama2_sys, llama2_sys_bos, llama2_sys_strip,
  mistral_v1, mistral_v3, mistral_v3_tekken, mistral_v7
};

struct chat_template {
  chat_format format = chat_format::chatml;
  std::string default_system;  // injected when the first message is not a system message ("" = none)
  std::string warning;         // non-empty when the template was not recognized (ChatML is used)
};

// Recognizes a template text (tokenizer.chat_template). ChatML-like templates (<|im_start|> /
// <|im_end|>) are recognized, with the default system prompt they inject, if any; Gemma's
// (<start_of_turn> / <end_of_turn>) too. Anything else (including an empty template) falls back to
// ChatML with a warning for the caller to show.
// [INST] templates are told apart as llama.cpp does ([SYSTEM_PROMPT]: v7; "' [INST] ' + system_message"
// or [AVAILABLE_TOOLS]: v1 when " [INST]" occurs, v3-tekken when "\"[INST]\"", else v3; otherwise
// Llama 2 with <<SYS>> support, BOS inside the history or stripped messages by their markers); they
// render no generation prompt (a user turn ends with [/INST]).
// Gemma (as llama.cpp renders it): system messages are trimmed and prepended to the next user turn
// ("{system}\n\n{content}"); each turn is "<start_of_turn>{role}\n{trimmed content}<end_of_turn>\n"
// with role "assistant" written "model"; the generation prompt is "<start_of_turn>model\n". The BOS
// token comes from the tokenizer (add_bos), not from the text.
chat_template chat_template_detect(const std::string& template_text);
chat_template chat_template_from_gguf(const gguf::file& f);
std::string apply_chat_template(const chat_template& t, const std::vector<chat_message>& messages, bool add_generation_prompt);

}  // namespace hashattn
