// The checks of the CUDA ops' params (src/cuda/host/cuda-validate.cpp), on the CPU: each accepts the
// valid params of plan-params.h and refuses each bad field with a message that names it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "cuda/plan-params.h"

namespace hashattn::cudaplan_test {
namespace {

// ---- the paged KV cache (through attend, then encode: the same check prefixed by the op) ----
TEST(CudaCheckKv, RefusesEachBadField) {
  ASSERT_NO_THROW(plan::check_attend(valid_attend()));
  auto refused = [](auto mutate, const char* field) {
    attend_params p = valid_attend();
    mutate(p.kv);
    expect_refused([&] { plan::check_attend(p); }, field);
  };
  refused([](kv_view& kv) { kv.type = dtype::f32; }, "attend: kv.type");
  refused([](kv_view& kv) { kv.n_head_kv = 0; }, "attend: kv.n_head_kv");
  refused([](kv_view& kv) { kv.head_dim = 12; }, "attend: kv.head_dim");
  refused([](kv_view& kv) { kv.page_size = 3; }, "attend: kv.page_size");
  refused([](kv_view& kv) { kv.page_size = 0; }, "attend: kv.page_size");
  refused([](kv_view& kv) { kv.page_size = INT32_MIN; }, "attend: kv.page_size");
  refused([](kv_view& kv) { kv.page_table = nullptr; }, "attend: kv.page_table");
  refused([](kv_view& kv) { kv.page_table_stride = 0; }, "attend: kv.page_table_stride");
  refused([](kv_view& kv) { kv.stride_tok = 100; }, "attend: kv.strides");     // not a multiple of 8
  refused([](kv_view& kv) { kv.stride_page = 2052; }, "attend: kv.strides");
  refused([](kv_view& kv) { kv.stride_head = 60; }, "attend: kv.strides");
  refused([](kv_view& kv) { kv.stride_head = 56; }, "attend: kv.strides");     // < head_dim
  refused([](kv_view& kv) { kv.stride_page = 0; }, "attend: kv.strides");
  refused([](kv_view& kv) { kv.stride_tok = -8; }, "attend: kv.strides");
  refused([](kv_view& kv) { kv.k = addr(0x100008); }, "attend: kv.k/v alignment");
  refused([](kv_view& kv) { kv.v = addr(0x200004); }, "attend: kv.k/v alignment");
  // Accepted edges: one token per page, f16, padded strides.
  attend_params p = valid_attend();
  p.kv.page_size = 1;
  p.kv.stride_page = p.kv.stride_tok;
  p.kv.type = dtype::f16;
  EXPECT_NO_THROW(plan::check_attend(p));
  p.kv.stride_head = 72;
  p.kv.stride_tok = 160;
  EXPECT_NO_THROW(plan::check_attend(p));

  encode_params e = valid_encode();
  e.kv.page_size = 6;
  expect_refused([&] { plan::check_encode(e, h200()); }, "encode: kv.page_size");
}

// ---- attend ----
TEST(CudaCheckAttend, RefusesEachBadField) {
  auto refused = [](auto mutate, const char* field) {
    attend_params p = valid_attend();
    mutate(p);
    expect_refused([&] { plan::check_attend(p); }, field);
  };
  refused([](attend_params& p) { p.batch = 0; }, "attend: batch");
  refused([](attend_params& p) { p.kv.k = nullptr; }, "attend: kv.k/kv.v");
  refused([](attend_params& p) { p.kv.v = nullptr; }, "attend: kv.k/kv.v");
  refused([](attend_params& p) { p.n_head = 0; }, "attend: n_head");
  refused([](attend_params& p) { p.n_head = 7; }, "attend: n_head");  // not a multiple of 2 KV heads
  refused([](attend_params& p) { p.kv.head_dim = p.kv.stride_head = 96; p.kv.stride_tok = 192; }, "attend: head_dim");
  refused([](attend_params& p) { p.kv.head_dim = p.kv.stride_head = 256; p.kv.stride_tok = 512; }, "attend: head_dim");
  refused([](attend_params& p) { p.n_head = 10; }, "attend: query heads per KV head");  // dense, group 5
  refused([](attend_params& p) { p.n_head = 32; }, "attend: query heads per KV head");  // group 16
  refused([](attend_params& p) { p.q = nullptr; }, "attend: q/out/seq_len");
  refused([](attend_params& p) { p.out = nullptr; }, "attend: q/out/seq_len");
  refused([](attend_params& p) { p.seq_len = nullptr; }, "attend: q/out/seq_len");
  refused([](attend_params& p) { p.max_ctx = 0; }, "attend: max_ctx");
  refused([](attend_params& p) { p.max_ctx = int64_t(1) << 31; }, "attend: max_ctx");
  refused([](attend_params& p) { p.idx = addr<const int32_t>(0x900000); p.idx_stride = 32; }, "attend: index lists");
  refused([](attend_params& p) {
    p.idx = addr<const int32_t>(0x900000);
    p.idx_count = addr<const int32_t>(0xa00000);
  }, "attend: index lists");  // idx_stride 0
  refused([](attend_params& p) { p.n_splits = -1; }, "attend: n_splits");
  refused([](attend_params& p) { p.n_splits = plan::MAX_SPLITS + 1; }, "attend: n_splits");
  // The launch grid is (splits, lists, batch): at most 65535 sequences and lists per sequence.
  refused([](attend_params& p) { p.batch = 65536; }, "attend: batch");
  refused([](attend_params& p) {  // per_head lists: one per query head
    p.n_head = 2 * 65536;
    p.idx = addr<const int32_t>(0x900000);
    p.idx_count = addr<const int32_t>(0xa00000);
    p.idx_stride = 32;
  }, "attend: lists per sequence");
  refused([](attend_params& p) { p.q = addr<const float>(0x400004); }, "attend: q/out alignment");
  refused([](attend_params& p) { p.out = addr<float>(0x500008); }, "attend: q/out alignment");

  // Accepted: group 3 with per_head lists (a list per query head), the split bounds, the context bound.
  attend_params p = valid_attend();
  p.n_head = 10;
  p.idx = addr<const int32_t>(0x900000);
  p.idx_count = addr<const int32_t>(0xa00000);
  p.idx_stride = 1;
  EXPECT_NO_THROW(plan::check_attend(p));
  p.per_group = true;  // group 5 per_group lists: refused (per_head lists above take any group)
  expect_refused([&] { plan::check_attend(p); }, "attend: query heads per KV head");
  for (int g : {3, 6, 7}) {  // kernels exist for these groups (SmolLM2, Qwen2.5)
    p.n_head = 2 * g;
    EXPECT_NO_THROW(plan::check_attend(p)) << "group " << g;
  }
  p = valid_attend();
  p.n_splits = plan::MAX_SPLITS;
  p.max_ctx = INT32_MAX;
  p.batch = 65535;
  p.kv.head_dim = p.kv.stride_head = 128;
  p.kv.stride_tok = 256;
  EXPECT_NO_THROW(plan::check_attend(p));
}

// ---- select (and the code store) ----
TEST(CudaCheckSelect, RefusesEachBadField) {
  ASSERT_NO_THROW(plan::check_select(valid_select()));
  auto refused = [](auto mutate, const char* field) {
    select_params p = valid_select();
    mutate(p);
    expect_refused([&] { plan::check_select(p); }, field);
  };
  refused([](select_params& p) { p.batch = 0; }, "select: batch");
  refused([](select_params& p) { p.n_head = 0; }, "select: heads");
  refused([](select_params& p) { p.n_head_kv = 0; }, "select: heads");
  refused([](select_params& p) { p.n_head = 7; }, "select: heads");
  refused([](select_params& p) {  // 16 query heads per list
    p.mode = gqa_mode::per_group;
    p.n_head = 32;
    p.codes = valid_codes(2);
  }, "select: query heads per KV group");
  refused([](select_params& p) { p.batch = 65536; }, "select: batch");  // grid (chunks, lists, batch)
  refused([](select_params& p) { p.n_head = 65536; p.n_head_kv = 1; }, "select: lists per sequence");
  refused([](select_params& p) { p.bits = 0; }, "select: bits");
  refused([](select_params& p) { p.bits = 33; }, "select: bits");
  refused([](select_params& p) { p.qcodes = nullptr; }, "select: device pointers");
  refused([](select_params& p) { p.seq_len = nullptr; }, "select: device pointers");
  refused([](select_params& p) { p.idx = nullptr; }, "select: device pointers");
  refused([](select_params& p) { p.idx_count = nullptr; }, "select: device pointers");
  refused([](select_params& p) { p.max_ctx = 0; }, "select: max_ctx");
  refused([](select_params& p) { p.max_ctx = int64_t(1) << 31; }, "select: max_ctx");
  refused([](select_params& p) { p.codes.codes = nullptr; }, "select: codes.codes");
  refused([](select_params& p) { p.codes.codes = addr<uint32_t>(0x700004); }, "select: codes.codes alignment");
  refused([](select_params& p) { p.codes.n_enc = 2; }, "select: codes.n_enc");
  refused([](select_params& p) { p.codes.bits = 16; }, "select: codes.bits");        // the kernels store uint32
  refused([](select_params& p) { p.codes.stride_tok = 8; }, "select: codes.stride_tok");  // rows of tokens
  // per_group lists read n_head_kv code heads: a per-head store does not fit the mode.
  refused([](select_params& p) { p.mode = gqa_mode::per_group; }, "select: codes.n_enc");
  refused([](select_params& p) { p.codes.stride_seq = 1026; }, "select: codes.strides");
  refused([](select_params& p) { p.codes.stride_enc = 130; }, "select: codes.strides");
  refused([](select_params& p) { p.codes.stride_enc = 124; }, "select: codes.stride_enc");  // < 128
  refused([](select_params& p) { p.max_ctx = 129; }, "select: codes.stride_enc");  // rows of 132 needed
  refused([](select_params& p) { p.budget.density = 0; }, "budget: density");
  refused([](select_params& p) { p.budget.sinks = -1; }, "budget: sinks");
  refused([](select_params& p) { p.idx_stride = 31; }, "select: idx_stride");

  // Accepted: per_group with its store; one code head needs no head stride.
  select_params p = valid_select();
  p.mode = gqa_mode::per_group;
  p.codes = valid_codes(2);
  EXPECT_NO_THROW(plan::check_select(p));
  p.n_head = p.n_head_kv = 1;
  p.mode = gqa_mode::per_head;
  p.codes = valid_codes(1);
  p.codes.stride_enc = 0;
  EXPECT_NO_THROW(plan::check_select(p));
}

// idx_stride must hold the longest list over every context up to max_ctx: below the budget's floor
// a list holds every token, so for a small density the longest list comes before max_ctx. The bound
// is recomputed here by brute force over the contexts (budget_tokens, core's rule).
TEST(CudaCheckSelect, IdxStrideBoundIsTheLongestListUpToMaxCtx) {
  struct shape {
    double density;
    int64_t count, sinks, window, max_ctx;
  };
  for (const shape& s : {shape{1.0 / 32, 0, 4, 4, 1000}, shape{0.25, 0, 4, 4, 128}, shape{0.5, 0, 0, 1, 37},
                         shape{0, 64, 16, 16, 5000}, shape{0, 64, 16, 16, 40}, shape{1.0 / 64, 0, 128, 128, 100000}}) {
    select_params p = valid_select();
    p.max_ctx = s.max_ctx;
    p.codes.stride_enc = plan::round_up(s.max_ctx, 4);
    p.codes.stride_seq = p.codes.stride_enc * p.codes.n_enc;
    p.budget.density = s.density;
    p.budget.count = s.count;
    p.budget.sinks = s.sinks;
    p.budget.window = s.window;
    int64_t longest = 0;
    for (int64_t n = 1; n <= s.max_ctx; ++n) longest = std::max(longest, budget_tokens(p.budget, n));
    const std::string at = "density " + std::to_string(s.density) + " count " + std::to_string(s.count) +
                           " max_ctx " + std::to_string(s.max_ctx) + ": longest list " + std::to_string(longest);
    p.idx_stride = longest;
    EXPECT_NO_THROW(plan::check_select(p)) << at;
    p.idx_stride = longest - 1;
    expect_refused([&] { plan::check_select(p); }, "select: idx_stride");
  }
}

// ---- encode ----
TEST(CudaCheckEncode, RefusesEachBadField) {
  const plan::device_info dev = h200();
  ASSERT_NO_THROW(plan::check_encode(valid_encode(), dev));
  auto refused = [&](auto mutate, const char* field) {
    encode_params p = valid_encode();
    mutate(p);
    expect_refused([&] { plan::check_encode(p, dev); }, field);
  };
  refused([](encode_params& p) { p.batch = 0; }, "encode: batch");
  refused([](encode_params& p) { p.n_head = 7; }, "encode: heads");
  refused([](encode_params& p) { p.n_head_kv = 0; }, "encode: heads");
  refused([](encode_params& p) { p.head_dim = 0; }, "encode: head_dim");
  refused([](encode_params& p) { p.head_dim = 2048; }, "encode: head_dim");
  refused([](encode_params& p) { p.k_new = nullptr; }, "encode: k_new");
  refused([](encode_params& p) { p.seq_len = nullptr; }, "encode: positions");
  refused([](encode_params& p) { p.key_mlp.n_layers = 0; }, "encode: key_mlp n_layers");
  refused([](encode_params& p) { p.key_mlp.n_layers = 4; }, "encode: key_mlp n_layers");
  refused([](encode_params& p) { p.key_mlp.n_enc = 2; }, "encode: key_mlp n_enc");
  // per_group: one key encoder per KV head; per-query-head key encoders do not fit the mode.
  refused([](encode_params& p) { p.mode = gqa_mode::per_group; }, "encode: key_mlp n_enc");
  refused([](encode_params& p) { p.key_mlp.in_dim = 128; }, "encode: key_mlp input width");
  refused([](encode_params& p) { p.key_mlp.bits = 33; }, "encode: key_mlp bits");
  refused([](encode_params& p) { p.key_mlp.bits = 0; }, "encode: key_mlp bits");
  refused([](encode_params& p) { p.key_mlp.hidden = 0; }, "encode: key_mlp hidden width");
  refused([](encode_params& p) { p.key_mlp.hidden = 1025; }, "encode: key_mlp hidden width");
  refused([](encode_params& p) { p.key_mlp.w[2] = nullptr; }, "encode: key_mlp weights of layer 2");
  refused([](encode_params& p) { p.key_mlp.b[0] = nullptr; }, "encode: key_mlp weights of layer 0");
  refused([](encode_params& p) { p.codes.codes = nullptr; }, "encode: codes");
  refused([](encode_params& p) { p.codes.n_enc = 2; }, "encode: codes.n_enc");
  refused([](encode_params& p) { p.codes.bits = 64; }, "encode: codes.bits");
  refused([](encode_params& p) { p.codes.codes = addr<uint32_t>(0x700008); }, "encode: codes.codes alignment");
  refused([](encode_params& p) { p.v_new = nullptr; }, "encode: v_new");
  refused([](encode_params& p) { p.kv.n_head_kv = 4; p.kv.stride_tok = 256; }, "encode: kv shape");
  refused([](encode_params& p) { p.kv_in_type = (dtype)7; }, "encode: kv_in_type");
  refused([](encode_params& p) { p.query_mlp.n_enc = 2; }, "encode: query_mlp n_enc");
  refused([](encode_params& p) { p.query_mlp.w[1] = nullptr; }, "encode: query_mlp weights of layer 1");
  refused([](encode_params& p) { p.qcodes = nullptr; }, "encode: qcodes");
  refused([](encode_params& p) { p.query_mlp.bits = 16; }, "encode: query bits");
  refused([](encode_params& p) { p.key_mlp.hidden = p.query_mlp.hidden = 1024; }, "shared memory");
  // 2^32 new tokens in tiles of 16 for 8 code heads: 2^31 jobs, one past the grid's x limit.
  refused([](encode_params& p) { p.batch = p.n_new = 65536; }, "encode: jobs");

  // Accepted: per_group with its encoders and store; codes only (no K/V append); one layer ignores
  // hidden; queries only (nothing of the keys is looked at); nothing at all.
  encode_params p = valid_encode();
  p.mode = gqa_mode::per_group;
  p.key_mlp.n_enc = 2;
  p.codes = valid_codes(2);
  EXPECT_NO_THROW(plan::check_encode(p, dev));
  p = valid_encode();
  p.kv.k = nullptr;
  p.v_new = nullptr;
  p.kv.page_size = 3;
  EXPECT_NO_THROW(plan::check_encode(p, dev));
  p = valid_encode();
  p.key_mlp.n_layers = p.query_mlp.n_layers = 1;
  p.key_mlp.hidden = p.query_mlp.hidden = -1;
  EXPECT_NO_THROW(plan::check_encode(p, dev));
  p = valid_encode();
  p.n_new = 0;
  p.k_new = nullptr;
  p.key_mlp = mlp_device{};
  p.codes = code_view{};
  EXPECT_NO_THROW(plan::check_encode(p, dev));
  p.q = nullptr;
  p.query_mlp = mlp_device{};
  EXPECT_NO_THROW(plan::check_encode(p, dev));
  p = valid_encode();  // 2^31 - 16 new tokens: 2^27 - 1 tiles x 8 + 8 query jobs fit
  p.batch = 1;
  p.n_new = INT32_MAX - 15;
  EXPECT_NO_THROW(plan::check_encode(p, dev));
}

// The shared-memory bound is the device's: the plan's own size passes, a byte less of device does not.
TEST(CudaCheckEncode, SharedMemoryBoundIsTheDevicesOptIn) {
  encode_params p = valid_encode();
  p.key_mlp.hidden = p.query_mlp.hidden = 512;
  const size_t smem = plan::encode_layout_of(p).smem;
  plan::device_info dev = h200();
  dev.max_smem_optin = (int)smem;
  EXPECT_NO_THROW(plan::check_encode(p, dev));
  dev.max_smem_optin = (int)smem - 1;
  expect_refused([&] { plan::check_encode(p, dev); }, "encode: encoder weights per head in shared memory");
}

// ---- decode: its shape, then the select and attend params it derives ----
TEST(CudaCheckDecode, RefusesBadShapeAndWhatItDerives) {
  const plan::device_info dev = h200();
  ASSERT_NO_THROW(plan::decode_layout_of(valid_decode(), dev));
  auto refused = [&](auto mutate, const char* field) {
    decode_params p = valid_decode();
    mutate(p);
    expect_refused([&] { plan::decode_layout_of(p, dev); }, field);
  };
  refused([](decode_params& p) { p.batch = 0; }, "decode: shape");
  refused([](decode_params& p) { p.n_head = 0; }, "decode: shape");
  refused([](decode_params& p) { p.kv.n_head_kv = 0; }, "decode: shape");
  refused([](decode_params& p) { p.codes.codes = nullptr; }, "select: codes.codes");
  refused([](decode_params& p) { p.mode = gqa_mode::per_group; }, "select: codes.n_enc");
  refused([](decode_params& p) { p.query_mlp.bits = 40; }, "select: bits");
  refused([](decode_params& p) { p.budget.density = 2; }, "budget: density");
  refused([](decode_params& p) { p.max_ctx = 0; }, "select: max_ctx");
  refused([](decode_params& p) { p.kv.head_dim = p.kv.stride_head = 96; p.kv.stride_tok = 192; }, "attend: head_dim");
  refused([](decode_params& p) { p.q = nullptr; }, "attend: q/out/seq_len");
  refused([](decode_params& p) { p.out = addr<float>(0x500004); }, "attend: q/out alignment");
}

}  // namespace
}  // namespace hashattn::cudaplan_test
