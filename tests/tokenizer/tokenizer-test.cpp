// Tokenizer unit tests on a toy vocabulary (no model needed): BPE merge order (rank first, then
// leftmost), merge results missing from the vocabulary, special tokens (control only with
// parse_special, user-defined always, longest first), BOS/EOS, byte-level decode, UTF-8 checks and
// streaming helpers, pre-tokenizer splits, vocabulary validation, construction from a GGUF, the
// minimal byte vocabulary of made models, and chat template recognition and rendering.
#include <gtest/gtest.h>

#include <random>

#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/tokenizer.h"
#include "tokenizer/inst-templates.h"
#include "model/tokenizer-pre.h"

using namespace hashattn;

namespace {

// GPT-2 byte map, written out independently: printable bytes stand for themselves, the others
// (0-32, 127-160, 173) take U+0100, U+0101, ... in byte order.
std::string mapped(unsigned char b) {
  uint32_t cp = b;
  if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
    uint32_t n = 0;
    for (int x = 0; x < b; x++)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else {
    s += (char)(0xC0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string mapped(const std::string& text) {
  std::string s;
  for (unsigned char c : text) s += mapped(c);
  return s;
}

// 256 byte tokens (id = byte), then extra tokens, then specials.
tokenizer_vocab toy_vocab(const std::string& pre = "gpt-2") {
  tokenizer_vocab v;
  v.pre = pre;
  for (int b = 0; b < 256; b++) v.tokens.push_back(mapped((unsigned char)b));
  v.types.assign(256, 1);
  auto add = [&](const std::string& text, int32_t type = 1) {
    v.tokens.push_back(text);
    v.types.push_back(type);
  };
  add("ll");                 // 256
  add("he");                 // 257
  add("hell");               // 258
  add("hello");              // 259
  add(mapped(" ") + "w");    // 260
  add("bc");                 // 261
  add("ab");                 // 262
  add("aa");                 // 263
  add("xyz");                // 264  ("xy" is not a token)
  add("<s>", 3);             // 265 control (BOS)
  add("</s>", 3);            // 266 control (EOS)
  add("<a>", 3);             // 267 control
  add("<a><b>", 3);          // 268 control, longer: wins over <a>
  add("<U>", 4);             // 269 user-defined
  v.merges = {"l l", "h e", "he ll", "hell o", mapped(" ") + " w", "b c", "a b", "a a", "x y", "xy z"};
  v.bos = 265;
  v.eos = 266;
  return v;
}

template <typename F>
void expect_error(F fn, std::initializer_list<const char*> needles) {
  try {
    fn();
    ADD_FAILURE() << "expected hashattn::error";
  } catch (const hashattn::error& e) {
    const std::string m = e.what();
    for (const char* n : needles) EXPECT_NE(m.find(n), std::string::npos) << "message: " << m << "\nmissing: " << n;
  }
}

std::vector<std::string> split(const std::string& pre, const std::string& text) {
  tok::pre_tokenizer p(pre);
  tok::match_scratch s;
  std::vector<std::pair<size_t, size_t>> out;
  p.split(text, 0, text.size(), out, s);
  std::vector<std::string> pieces;
  for (auto [o, l] : out) pieces.push_back(text.substr(o, l));
  return pieces;
}

using ids = std::vector<int32_t>;

}  // namespace

TEST(tokenizer, bpe_merge_order) {
  auto t = tokenizer::from_vocab(toy_vocab());
  EXPECT_EQ(t->encode("hello", false), (ids{259}));
  EXPECT_EQ(t->encode("hellx", false), (ids{258, 'x'}));
  EXPECT_EQ(t->encode("helo", false), (ids{257, 'l', 'o'}));
  // "b c" outranks "a b": abc -> a + bc, not ab + c.
  EXPECT_EQ(t->encode("abc", false), (ids{'a', 261}));
  EXPECT_EQ(t->encode("abd", false), (ids{262, 'd'}));
  // Equal ranks: leftmost first.
  EXPECT_EQ(t->encode("aaa", false), (ids{263, 'a'}));
  EXPECT_EQ(t->encode("aaaa", false), (ids{263, 263}));
  // "x y" makes "xy", which is not a token; "xy z" makes "xyz", which is.
  EXPECT_EQ(t->encode("xyz", false), (ids{264}));
  EXPECT_EQ(t->encode("xy", false), (ids{'x', 'y'}));
  // Pre-tokenization: " world" is one piece, starting with the space.
  EXPECT_EQ(t->encode("hello world", false), (ids{259, 260, 'o', 'r', 'l', 'd'}));
  EXPECT_EQ(t->encode("", false), ids{});
}

TEST(tokenizer, special_tokens) {
  tokenizer_vocab v = toy_vocab();
  auto t = tokenizer::from_vocab(v);
  EXPECT_EQ(t->encode("<a>hello", false, true), (ids{267, 259}));
  EXPECT_EQ(t->encode("<a><b>", false, true), (ids{268}));
  EXPECT_EQ(t->encode("<a><a><b><a>", false, true), (ids{267, 268, 267}));
  // Control tokens are plain text without parse_special; user-defined ones always match.
  EXPECT_EQ(t->encode("<a>", false, false), (ids{'<', 'a', '>'}));
  EXPECT_EQ(t->encode("x<U>y", false, false), (ids{'x', 269, 'y'}));
  EXPECT_EQ(t->encode("x<U>y", false, true), (ids{'x', 269, 'y'}));
  EXPECT_EQ(t->encode("<s>", false, true), (ids{265}));
  // add_special follows add_bos / add_eos.
  EXPECT_EQ(t->encode("hello", true), (ids{259}));
  v.add_bos = true;
  v.add_eos = true;
  auto t2 = tokenizer::from_vocab(v);
  EXPECT_EQ(t2->encode("hello", true), (ids{265, 259, 266}));
  EXPECT_EQ(t2->encode("", true), (ids{265, 266}));
  EXPECT_EQ(t2->encode("hello", false), (ids{259}));
  EXPECT_TRUE(t2->add_bos());
  EXPECT_TRUE(t2->is_eog(266));
  EXPECT_FALSE(t2->is_eog(265));
}

TEST(tokenizer, decode_bytes_and_specials) {
  auto t = tokenizer::from_vocab(toy_vocab());
  EXPECT_EQ(t->decode({259, 260, 'o'}), "hello wo");
  EXPECT_EQ(t->token_to_piece(' '), " ");
  EXPECT_EQ(t->token_to_piece('\n'), "\n");
  EXPECT_EQ(t->token_to_piece(0), std::string(1, '\0'));
  EXPECT_EQ(t->token_to_piece(0xff), "\xff");
  EXPECT_EQ(t->decode({267, 259, 269}), "<a>hello<U>");
  EXPECT_EQ(t->decode({267, 259, 269}, false), "hello<U>");
  expect_error([&] { t->token_to_piece(270); }, {"token id out of range", "270", "0..269"});
  expect_error([&] { t->token_to_piece(-1); }, {"out of range"});
  EXPECT_EQ(t->n_vocab(), 270);
  EXPECT_EQ(t->find_token("hello"), 259);
  EXPECT_EQ(t->find_token("nope"), -1);
  EXPECT_EQ(t->type(269), token_type::user_defined);
  EXPECT_EQ(t->token_text(257), "he");
}

TEST(tokenizer, random_round_trips) {
  auto t = tokenizer::from_vocab(toy_vocab());
  const uint32_t seed = 777;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::vector<std::string> atoms = {"a", "b", "c", "h", "e", "l", "o", " ", "  ", "\n", "\t", "x", "y",
                                          "z", "1", "23", "'s", "é", "中", "😀", "<a>", "<U>", ".", "\r\n"};
  for (int it = 0; it < 300; it++) {
    std::string s;
    const int n = rng() % 20;
    for (int k = 0; k < n; k++) s += atoms[rng() % atoms.size()];
    for (int sp = 0; sp < 2; sp++) {
      const auto e = t->encode(s, false, sp);
      EXPECT_EQ(t->decode(e), s) << "\"" << s << "\"";
      for (int32_t id : e) EXPECT_TRUE(id >= 0 && id < t->n_vocab());
    }
  }
}

TEST(tokenizer, invalid_utf8_is_an_error) {
  auto t = tokenizer::from_vocab(toy_vocab());
  expect_error([&] { t->encode("ok\xff", false); }, {"invalid UTF-8", "byte 2", "0xff", "utf8_sanitize"});
  expect_error([&] { t->encode("\xc3", false); }, {"invalid UTF-8", "byte 0"});
  EXPECT_EQ(t->decode(t->encode(utf8_sanitize("a\xff" "b"), false)), "a\xEF\xBF\xBD" "b");
}

TEST(utf8, validation_sanitize_and_streaming) {
  EXPECT_EQ(utf8_find_invalid("plain ascii"), std::string::npos);
  EXPECT_EQ(utf8_find_invalid("\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"), std::string::npos);
  EXPECT_EQ(utf8_find_invalid("a\xc0\x80"), 1u);          // overlong
  EXPECT_EQ(utf8_find_invalid("ab\xed\xa0\x80"), 2u);     // surrogate
  EXPECT_EQ(utf8_find_invalid("\xf4\x90\x80\x80"), 0u);   // above U+10FFFF
  EXPECT_EQ(utf8_find_invalid("\xe0\x9f\xbf"), 0u);       // overlong 3-byte
  EXPECT_EQ(utf8_find_invalid("x\x80"), 1u);              // stray continuation
  EXPECT_EQ(utf8_find_invalid("\xe4\xb8"), 0u);           // cut off
  EXPECT_EQ(utf8_sanitize("a\xff\xfe" "b\xe4\xb8"), "a\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_sanitize("\xc3\xa9"), "\xc3\xa9");
  // Streaming: a prefix never ends inside a sequence.
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("ab"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xf0\x9f"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xf0\x9f\x98"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xf0\x9f\x98\x80"), 5u);
  EXPECT_EQ(utf8_complete_prefix("a\xc3"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xe4\xb8"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xff"), 2u);  // invalid bytes are passed on, not held back
  const std::string text = "x\xe4\xb8\xad\xf0\x9f\x98\x80y";
  for (size_t cut = 0; cut <= text.size(); cut++) {
    const std::string head = text.substr(0, cut);
    const size_t k = utf8_complete_prefix(head);
    EXPECT_EQ(utf8_find_invalid(head.substr(0, k)), std::string::npos) << cut;
    EXPECT_GE(k + 3, cut);
  }
}

TEST(pre_tokenizer, splits) {
  EXPECT_EQ(split("smollm", "ab12 cd3"), (std::vector<std::string>{"ab", "1", "2", " cd", "3"}));
  EXPECT_EQ(split("gpt-2", "don't stop  now"), (std::vector<std::string>{"don", "'t", " stop", " ", " now"}));
  EXPECT_EQ(split("gpt-2", "DON'T"), (std::vector<std::string>{"DON", "'", "T"}));
  EXPECT_EQ(split("gpt-2", "a 12345!?"), (std::vector<std::string>{"a", " 12345", "!?"}));
  EXPECT_EQ(split("gpt-2", "x\n\n y  "), (std::vector<std::string>{"x", "\n\n", " y", "  "}));
  EXPECT_EQ(split("llama-bpe", "DON'T 12345"), (std::vector<std::string>{"DON", "'T", " ", "123", "45"}));
  EXPECT_EQ(split("llama-bpe", "a,\n\nb"), (std::vector<std::string>{"a", ",\n\n", "b"}));
  EXPECT_EQ(split("qwen2", "x123"), (std::vector<std::string>{"x", "1", "2", "3"}));
  EXPECT_EQ(split("gpt-2", "中文 текст"), (std::vector<std::string>{"中文", " текст"}));
  EXPECT_EQ(split("default", "a=1234"), (std::vector<std::string>{"a", "=", "123", "4"}));
  // Every byte ends up in exactly one piece.
  std::string joined;
  for (const auto& p : split("smollm", " \t mixed 42 ünï ☃\r\n")) joined += p;
  EXPECT_EQ(joined, " \t mixed 42 ünï ☃\r\n");
  expect_error([] { tok::pre_tokenizer p("bogus"); }, {"unknown pre-tokenizer 'bogus'", "smollm", "llama-bpe"});
}

TEST(tokenizer, vocabulary_validation) {
  auto bad = [](auto edit, std::initializer_list<const char*> needles) {
    tokenizer_vocab v = toy_vocab();
    edit(v);
    expect_error([&] { tokenizer::from_vocab(v); }, needles);
  };
  bad([](tokenizer_vocab& v) { v.model = "bert"; }, {"unsupported tokenizer model 'bert'", "SentencePiece"});
  bad([](tokenizer_vocab& v) {
    v.model = "llama";
    v.scores.assign(3, 0.f);
  }, {"scores length differs"});
  bad([](tokenizer_vocab& v) { v.tokens.clear(); v.types.clear(); }, {"empty"});
  bad([](tokenizer_vocab& v) { v.types.pop_back(); }, {"token_type length", "269", "270"});
  bad([](tokenizer_vocab& v) { v.types[3] = 9; }, {"token 3", "unknown token type", "9"});
  bad([](tokenizer_vocab& v) { v.bos = 270; }, {"bos token id out of range", "270"});
  bad([](tokenizer_vocab& v) { v.merges.push_back("nospace"); }, {"merge 10 is malformed", "nospace"});
  bad([](tokenizer_vocab& v) { v.merges.push_back("a "); }, {"malformed"});
  bad([](tokenizer_vocab& v) { v.pre = "tekken"; }, {"unknown pre-tokenizer 'tekken'"});
  bad([](tokenizer_vocab& v) { v.add_eos = true; v.eos = -1; }, {"add_eos"});
}

TEST(tokenizer, from_gguf_metadata) {
  const tokenizer_vocab tv = toy_vocab("smollm");
  gguf::writer w;
  w.set("general.architecture", gguf::value::from_string("llama"));
  w.set("tokenizer.ggml.model", gguf::value::from_string("gpt2"));
  w.set("tokenizer.ggml.pre", gguf::value::from_string("smollm"));
  w.set("tokenizer.ggml.tokens", gguf::value::from_strings(tv.tokens));
  w.set("tokenizer.ggml.token_type", gguf::value::from_i32s(tv.types));
  w.set("tokenizer.ggml.merges", gguf::value::from_strings(tv.merges));
  w.set("tokenizer.ggml.bos_token_id", gguf::value::from_u32(265));
  w.set("tokenizer.ggml.eos_token_id", gguf::value::from_u32(266));
  w.set("tokenizer.ggml.add_bos_token", gguf::value::from_bool(true));
  const auto bytes = w.to_bytes();
  auto f = gguf::file::from_buffer(bytes.data(), bytes.size());
  auto t = tokenizer::from_gguf(*f);
  EXPECT_EQ(t->pre(), "smollm");
  EXPECT_EQ(t->encode("hello12", true), (ids{265, 259, '1', '2'}));

  gguf::writer w2 = w;
  w2.set("tokenizer.ggml.model", gguf::value::from_string("bert"));
  auto b2 = w2.to_bytes();
  auto f2 = gguf::file::from_buffer(b2.data(), b2.size());
  expect_error([&] { tokenizer::from_gguf(*f2); }, {"tokenizer.ggml.model 'bert'", "gpt2", "llama"});
  gguf::writer w3 = w;
  w3.set("tokenizer.ggml.eos_token_id", gguf::value::from_u32(5000));
  auto b3 = w3.to_bytes();
  auto f3 = gguf::file::from_buffer(b3.data(), b3.size());
  expect_error([&] { tokenizer::from_gguf(*f3); }, {"tokenizer.ggml.eos_token_id out of range", "5000"});
  gguf::writer w4;
  w4.set("tokenizer.ggml.model", gguf::value::from_string("gpt2"));
  w4.set("tokenizer.ggml.tokens", gguf::value::from_strings(tv.tokens));
  auto b4 = w4.to_bytes();
  auto f4 = gguf::file::from_buffer(b4.data(), b4.size());
  expect_error([&] { tokenizer::from_gguf(*f4); }, {"'tokenizer.ggml.merges' is missing"});
}

// The minimal byte vocabulary (for made models): n tokens, any text encodes byte by byte and decodes
// back, bos added, filler tokens decode to their text; written to GGUF and read back unchanged.
TEST(tokenizer, byte_vocabulary_round_trips_through_gguf) {
  for (int64_t n : {258, 512, 128256}) {
    SCOPED_TRACE("n_vocab " + std::to_string(n));
    gguf::writer w;
    tokenizer_vocab_write(tokenizer_vocab_bytes(n), w);
    const auto bytes = w.to_bytes();
    auto f = gguf::file::from_buffer(bytes.data(), bytes.size());
    auto t = tokenizer::from_gguf(*f);
    ASSERT_EQ(t->n_vocab(), n);
    EXPECT_EQ(t->bos(), n - 2);
    EXPECT_EQ(t->eos(), n - 1);
    EXPECT_TRUE(t->is_eog((int32_t)n - 1));
    const std::string text = "Hello, w\xc3\xb6rld!\n\t\x01 ok";
    const ids got = t->encode(text, true);
    ids want{(int32_t)n - 2};
    for (unsigned char c : text) want.push_back(c);
    EXPECT_EQ(got, want);
    EXPECT_EQ(t->decode(got, false), text);
    for (int b = 0; b < 256; b++) EXPECT_EQ(t->token_text(b), mapped((unsigned char)b)) << b;
    if (n > 258) {
      EXPECT_EQ(t->token_to_piece(300), "<|filler_300|>");
    }
  }
  expect_error([] { tokenizer_vocab_bytes(257); }, {"257", "258"});
}

// ---- chat templates ----

namespace {
const char* k_smollm_template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const char* k_plain_chatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const char* k_phi3_template = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}";
}  // namespace

TEST(chat_template, detects_chatml_and_default_system) {
  const chat_template t = chat_template_detect(k_smollm_template);
  EXPECT_EQ(t.format, chat_format::chatml);
  EXPECT_TRUE(t.warning.empty());
  EXPECT_EQ(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(apply_chat_template(t, {{"user", "hi"}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(apply_chat_template(t, {{"system", "S"}, {"user", "U"}, {"assistant", "A"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n");
  EXPECT_EQ(apply_chat_template(t, {}, true), "<|im_start|>assistant\n");
  const chat_template plain = chat_template_detect(k_plain_chatml);
  EXPECT_TRUE(plain.warning.empty());
  EXPECT_EQ(plain.default_system, "");
  EXPECT_EQ(apply_chat_template(plain, {{"user", "hi"}}, true),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  expect_error([&] { apply_chat_template(t, {{"", "x"}}, true); }, {"empty role"});
}

TEST(chat_template, unknown_and_missing_fall_back_to_chatml_with_warning) {
  const chat_template u = chat_template_detect(k_phi3_template);
  EXPECT_EQ(u.format, chat_format::chatml);
  EXPECT_NE(u.warning.find("unrecognized chat template"), std::string::npos);
  EXPECT_EQ(apply_chat_template(u, {{"user", "hi"}}, false), "<|im_start|>user\nhi<|im_end|>\n");
  const chat_template e = chat_template_detect("");
  EXPECT_NE(e.warning.find("no chat template"), std::string::npos);
  gguf::writer w;
  w.set("tokenizer.chat_template", gguf::value::from_u32(3));
  const auto b = w.to_bytes();
  auto f = gguf::file::from_buffer(b.data(), b.size());
  expect_error([&] { chat_template_from_gguf(*f); }, {"tokenizer.chat_template has the wrong type", "u32"});
}

namespace hashattn {
namespace {

// Gemma's turns, against the expected output of llama.cpp's tests/test-chat-template.cpp (llama.cpp
// 0.3.36's vendored tree, case "google/gemma-7b-it": its built-in rendering, system merged into the
// first user turn).
TEST(chat_template, gemma_turns_as_llama_cpp) {
  const char* tmpl =
      "{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
      "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";
  const chat_template t = chat_template_detect(tmpl);
  EXPECT_EQ(t.format, chat_format::gemma);
  EXPECT_TRUE(t.warning.empty());
  const std::vector<chat_message> conv = {{"system", "You are a helpful assistant"}, {"user", "Hello"},
                                          {"assistant", "Hi there"},                  {"user", "Who are you"},
                                          {"assistant", "   I am an assistant   "},    {"user", "Another question"}};
  EXPECT_EQ(apply_chat_template(t, conv, true),
            "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi "
            "there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an "
            "assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(apply_chat_template(t, {{"user", "hi"}}, false), "<start_of_turn>user\nhi<end_of_turn>\n");
  expect_error([&] { apply_chat_template(t, {{"", "x"}}, true); }, {"empty role"});
}


// Llama 2 and Mistral [INST] templates: every such case of llama.cpp's chat-template test, its template
// text detected and rendered as llama.cpp's expected output (tests/tokenizer/inst-templates.h).
TEST(chat_template, inst_templates_as_llama_cpp) {
  const std::vector<chat_message> conv = {{"system", "You are a helpful assistant"}, {"user", "Hello"},
                                          {"assistant", "Hi there"},                  {"user", "Who are you"},
                                          {"assistant", "   I am an assistant   "},    {"user", "Another question"}};
  int n = 0;
  for (const auto& c : k_inst_cases) {
    const chat_template t = chat_template_detect(c.tmpl);
    EXPECT_NE(t.format, chat_format::chatml) << c.name;
    EXPECT_TRUE(t.warning.empty()) << c.name;
    EXPECT_EQ(apply_chat_template(t, conv, true), c.expected) << c.name;
    ++n;
  }
  EXPECT_EQ(n, 7);
}

}  // namespace
}  // namespace hashattn
