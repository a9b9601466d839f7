// Fuzz target "gguf": parses the input with gguf::file::from_buffer; when it parses, checks that
// every tensor lies inside the buffer, formats every value, calls the typed getters on every key,
// dequantizes the first row of each tensor (bounded), and builds the tokenizer and chat template
// from the metadata (tokenizer.ggml.*, tokenizer.chat_template) and the model (hyperparameters,
// tensor presence, shapes and types: model::from_gguf) as a model load would.
#include <memory>
#include <string>
#include <vector>

#include "fuzz-entry.h"
#include "hashattn/error.h"
#include "hashattn/gguf.h"
#include "hashattn/model.h"
#include "hashattn/tokenizer.h"

namespace hashattn::fuzz {

namespace {

template <typename F>
void expect_ok_or_error(F fn) {
  try {
    fn();
  } catch (const hashattn::error&) {
  }
}

}  // namespace

int gguf_one(const uint8_t* data, size_t size) {
  std::unique_ptr<gguf::file> f;
  try {
    f = gguf::file::from_buffer(data, size);
  } catch (const hashattn::error&) {
    return 0;
  }
  HASHATTN_FUZZ_CHECK(f->size() == size);
  HASHATTN_FUZZ_CHECK(f->alignment() >= 1 && (f->alignment() & (f->alignment() - 1)) == 0);
  for (const auto& e : f->metadata()) {
    (void)e.val.to_string(8);
    HASHATTN_FUZZ_CHECK(f->find(e.key) == &e.val);
    expect_ok_or_error([&] { (void)f->get_string(e.key); });
    expect_ok_or_error([&] { (void)f->get_int(e.key); });
    expect_ok_or_error([&] { (void)f->get_float(e.key); });
    expect_ok_or_error([&] { (void)f->get_strings(e.key); });
    expect_ok_or_error([&] { (void)f->get_ints(e.key); });
    expect_ok_or_error([&] { (void)f->get_floats(e.key); });
  }
  std::vector<float> row;
  for (const auto& t : f->tensors()) {
    HASHATTN_FUZZ_CHECK(f->find_tensor(t.name) == &t);
    HASHATTN_FUZZ_CHECK(!t.ne.empty() && t.ne.size() <= 4);
    HASHATTN_FUZZ_CHECK(f->data_offset() <= f->size());
    HASHATTN_FUZZ_CHECK(t.offset <= f->size() - f->data_offset());
    HASHATTN_FUZZ_CHECK(t.nbytes <= f->size() - f->data_offset() - t.offset);
    HASHATTN_FUZZ_CHECK(t.n_elements() >= 1);
    if (!gguf::type_dequantizable(t.type) || t.ne[0] > (1 << 16)) continue;
    const size_t rb = gguf::row_bytes(t.type, t.ne[0]);
    HASHATTN_FUZZ_CHECK(rb <= t.nbytes);
    row.resize((size_t)t.ne[0]);
    gguf::dequantize_row(t.type, t.data, row.data(), t.ne[0]);
  }
  expect_ok_or_error([&] { (void)chat_template_from_gguf(*f); });
  expect_ok_or_error([&] {
    auto tok = tokenizer::from_gguf(*f);
    const std::string text = "Hello world, <|im_start|>user\n12345 caf\xC3\xA9 \xE2\x82\xAC!<|im_end|>";
    for (bool parse_special : {false, true}) {
      const std::vector<int32_t> ids = tok->encode(text, true, parse_special);
      for (int32_t id : ids) HASHATTN_FUZZ_CHECK(id >= 0 && id < tok->n_vocab());
      (void)tok->decode(ids, true);
    }
  });
  std::shared_ptr<const gguf::file> shared(std::move(f));
  try {
    auto m = model::from_gguf(shared);
    const model_hparams& hp = m->hparams();
    HASHATTN_FUZZ_CHECK(hp.n_layer > 0 && hp.n_head > 0 && hp.n_head_kv > 0 && hp.n_head % hp.n_head_kv == 0);
    HASHATTN_FUZZ_CHECK(hp.head_dim > 0 && hp.rope_dims > 0 && hp.rope_dims <= hp.head_dim);
    (void)m->describe();
    (void)m->decode_weight_bytes();
  } catch (const hashattn::error&) {
  }
  return 0;
}

}  // namespace hashattn::fuzz
