// The launch planning of the CUDA ops (src/cuda/host/cuda-plan.cpp), on the CPU: job and grid sizes
// cover the work, each workspace region holds the largest index its kernel computes (restated here
// from the kernels' indexing, see the comments), split and chunk counts stay in their documented
// bounds, and a few plans are checked against values worked out by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/plan-params.h"

namespace hashattn::cudaplan_test {
namespace {

constexpr int64_t GRID_X_MAX = 2147483647;  // CUDA's limits on gridDim.x, and on gridDim.y and .z
constexpr int64_t GRID_YZ_MAX = 65535;

// Regions [off[i], off[i + 1]) (the last one ends at bytes) start at multiples of 256, in order, and
// region i holds need[i] bytes.
void expect_regions(const std::vector<size_t>& off, size_t bytes, const std::vector<size_t>& need,
                    const std::string& at) {
  ASSERT_EQ(off.size(), need.size());
  for (size_t i = 0; i < off.size(); ++i) {
    const size_t end = i + 1 < off.size() ? off[i + 1] : bytes;
    EXPECT_EQ(off[i] % 256, 0u) << at << ": region " << i;
    EXPECT_LE(off[i], end) << at << ": region " << i;
    EXPECT_GE(end - off[i], need[i]) << at << ": region " << i << " holds " << end - off[i] << " bytes";
  }
  EXPECT_EQ(off[0], 0u) << at;
}

// ---- encode ----
TEST(CudaPlanEncode, JobsCoverEveryTokenAndHead) {
  struct shape {
    int batch, n_head, n_head_kv, n_new;
    gqa_mode mode;
    bool queries;
  };
  for (const shape& s : {shape{1, 8, 2, 1, gqa_mode::per_head, true}, shape{2, 32, 8, 100, gqa_mode::per_group, false},
                         shape{33, 4, 4, 1, gqa_mode::per_head, true}, shape{17, 8, 2, 0, gqa_mode::per_head, true},
                         shape{3, 8, 1, 16, gqa_mode::per_group, true}}) {
    encode_params p = valid_encode();
    p.batch = s.batch;
    p.n_head = s.n_head;
    p.n_head_kv = s.n_head_kv;
    p.n_new = s.n_new;
    p.mode = s.mode;
    if (!s.queries) p.q = nullptr;
    const plan::encode_layout l = plan::encode_layout_of(p);
    const int code_heads = s.mode == gqa_mode::per_group ? s.n_head_kv : s.n_head;
    const int64_t keys = (int64_t)s.batch * s.n_new;
    const std::string at = "batch " + std::to_string(s.batch) + " n_new " + std::to_string(s.n_new);
    EXPECT_EQ(l.n_code_head, code_heads) << at;
    EXPECT_EQ(l.n_key_tok, keys) << at;
    // A key job covers ENC_TT tokens of one code head; the tiles cover the tokens, none is empty.
    EXPECT_GE((int64_t)l.key_tiles * plan::ENC_TT, keys) << at;
    EXPECT_LT((int64_t)(l.key_tiles - 1) * plan::ENC_TT, std::max<int64_t>(keys, 1)) << at;
    EXPECT_EQ(l.n_key_jobs, s.n_new > 0 ? l.key_tiles * code_heads : 0) << at;
    // A query job covers ENC_TT sequences of one query head.
    EXPECT_EQ(l.q_tiles, s.queries ? (s.batch + plan::ENC_TT - 1) / plan::ENC_TT : 0) << at;
    EXPECT_EQ(l.n_q_jobs, l.q_tiles * (s.queries ? s.n_head : 0)) << at;
    EXPECT_EQ(l.jobs, l.n_key_jobs + l.n_q_jobs) << at;
    EXPECT_LE(l.jobs, GRID_X_MAX) << at;
  }
}

// Shared memory: the larger head's weights (segments rounded up to 4 floats), two activation tiles of
// ENC_TT tokens x the widest activation, ENC_THREADS partial sums. Sizes worked out by hand.
TEST(CudaPlanEncode, SharedMemoryHoldsWeightsAndTiles) {
  encode_params p = valid_encode();  // 64 -> 128 -> 128 -> 32, keys and queries alike
  // weights 64*128 + 128 + 128*128 + 128 + 128*32 + 32 = 28,960 floats; tiles 2 * 16 * 128; sums 512
  EXPECT_EQ(plan::encode_layout_of(p).smem, (28960u + 4096u + 512u) * 4u);
  EXPECT_EQ(plan::encode_layout_of(p).max_dim, 128);
  // Two layers 64 -> 10 -> 30 bits: 640 + 12 (10 rounded up) + 300 + 32 (30 rounded up) = 984 floats;
  // the widest activation is the input (64).
  p.key_mlp.n_layers = p.query_mlp.n_layers = 2;
  p.key_mlp.hidden = p.query_mlp.hidden = 10;
  p.key_mlp.bits = p.query_mlp.bits = 30;
  EXPECT_EQ(plan::encode_layout_of(p).smem, (984u + 2048u + 512u) * 4u);
  EXPECT_EQ(plan::encode_layout_of(p).max_dim, 64);
  // Keys and queries of different widths: the larger head's weights, the widest activation of both.
  p = valid_encode();
  p.query_mlp.hidden = 256;  // 64*256 + 256 + 256*256 + 256 + 256*32 + 32 = 90,656 floats
  EXPECT_EQ(plan::encode_layout_of(p).smem, (90656u + 2u * 16u * 256u + 512u) * 4u);
  p.q = nullptr;  // the query MLP is then not looked at
  EXPECT_EQ(plan::encode_layout_of(p).smem, (28960u + 4096u + 512u) * 4u);
}

// The kernel keeps each token's activations at x0/x1 + t * width for every layer's width: max_dim
// must be at least every width of the MLPs it runs; x0 starts after the job's own head's weights, x1
// ENC_TT x max_dim floats later, then ENC_THREADS partial sums.
TEST(CudaPlanEncode, ActivationTilesHoldEveryLayer) {
  for (int layers = 1; layers <= 3; ++layers)
    for (int hidden : {8, 64, 200, 1024})
      for (int bits : {1, 16, 32}) {
        encode_params p = valid_encode();
        p.key_mlp.n_layers = p.query_mlp.n_layers = layers;
        p.key_mlp.hidden = hidden;
        p.query_mlp.hidden = hidden / 2 + 1;
        p.key_mlp.bits = p.query_mlp.bits = bits;
        const plan::encode_layout l = plan::encode_layout_of(p);
        for (const mlp_device& m : {p.key_mlp, p.query_mlp}) {
          const plan::mlp_args a = plan::to_args(m);
          for (int i = 0; i <= a.n_layer; ++i)
            EXPECT_LE(a.dims[i], l.max_dim) << layers << " layers, hidden " << hidden << ", bits " << bits;
          EXPECT_GE(l.smem, (size_t)(plan::weight_floats(a) + 2 * plan::ENC_TT * l.max_dim + plan::ENC_THREADS) * 4);
        }
      }
}

// ---- select ----
select_params select_shape(int batch, int n_head, int n_head_kv, gqa_mode mode, int bits, int64_t max_ctx) {
  select_params p = valid_select();
  p.batch = batch;
  p.n_head = n_head;
  p.n_head_kv = n_head_kv;
  p.mode = mode;
  p.bits = bits;
  p.max_ctx = max_ctx;
  p.codes = valid_codes(mode == gqa_mode::per_group ? n_head_kv : n_head);
  p.codes.stride_enc = plan::round_up(max_ctx, 4);
  p.codes.stride_seq = p.codes.stride_enc * p.codes.n_enc;
  p.idx_stride = budget_max_tokens(p.budget.density, p.budget.count, p.budget.sinks, p.budget.window, max_ctx);
  return p;
}

TEST(CudaPlanSelect, ChunksCoverTheContextAndTheWorkspaceEveryIndex) {
  for (int sms : {1, 16, 132})
    for (const auto& [batch, n_head, n_head_kv, mode, bits] :
         {std::tuple{1, 8, 2, gqa_mode::per_head, 32}, std::tuple{4, 32, 8, gqa_mode::per_group, 32},
          std::tuple{64, 32, 4, gqa_mode::per_group, 16}, std::tuple{3, 6, 3, gqa_mode::per_head, 7}})
      for (int64_t max_ctx : {1, 100, 4096, 4097, 100000, 1 << 20, 3000000}) {
        const select_params p = select_shape(batch, n_head, n_head_kv, mode, bits, max_ctx);
        ASSERT_NO_THROW(plan::check_select(p));
        plan::device_info dev = h200();
        dev.sm_count = sms;
        const plan::select_layout l = plan::select_layout_of(p, dev);
        const std::string at = std::to_string(sms) + " SMs, batch " + std::to_string(batch) + ", max_ctx " +
                               std::to_string(max_ctx);
        const int qpl = mode == gqa_mode::per_group ? n_head / n_head_kv : 1;
        EXPECT_EQ(l.n_lists, mode == gqa_mode::per_group ? n_head_kv : n_head) << at;
        EXPECT_EQ(l.qpl, qpl) << at;
        EXPECT_EQ(l.levels, qpl * bits + 1) << at;
        EXPECT_LE(l.levels, plan::MAX_QPL * 32 + 1) << at;  // the kernel's shared histogram
        // Chunks: whole compaction tiles, covering [0, max_ctx), none starting past it.
        EXPECT_EQ(l.chunk % plan::SEL_TILE, 0) << at;
        EXPECT_GE(l.n_chunks, 1) << at;
        EXPECT_LE(l.n_chunks, 1024) << at;
        EXPECT_GE((int64_t)l.n_chunks * l.chunk, max_ctx) << at;
        EXPECT_LT((int64_t)(l.n_chunks - 1) * l.chunk, max_ctx) << at;
        // grid (n_chunks, n_lists, batch)
        EXPECT_LE(l.n_lists, GRID_YZ_MAX) << at;
        // Largest index + 1 of each array (list = b * n_lists + r < lists, c < n_chunks, lev < levels):
        //   ticket[list], tot[list * LV + lev], lp[list] (int4), meta[list * n_chunks + c] (int2),
        //   cum[(list * n_chunks + c) * LV + lev].
        const size_t lists = (size_t)batch * l.n_lists, LV = l.levels, nc = l.n_chunks;
        expect_regions({l.off_ticket, l.off_tot, l.off_lp, l.off_meta, l.off_cum}, l.bytes,
                       {lists * 4, lists * LV * 4, lists * 16, lists * nc * 8, lists * nc * LV * 4}, at);
      }
}

// Chunks per list fill the device (values worked out by hand): one list on many SMs is cut into as
// many chunks as it has tiles; lists that already fill the device are not cut.
TEST(CudaPlanSelect, ChunksFillTheDevice) {
  const plan::device_info dev = h200();  // 8 x 132 = 1056 resident CTAs
  select_params p = select_shape(1, 1, 1, gqa_mode::per_head, 32, 131072);
  plan::select_layout l = plan::select_layout_of(p, dev);
  EXPECT_EQ(l.n_chunks, 32);  // 131072 / 4096 tiles
  EXPECT_EQ(l.chunk, 4096);
  // 8 lists of 2M tokens (512 tiles): 132 chunks each make one wave; a chunk of 2M / 132 = 15,888
  // tokens rounded up to whole tiles is 16,384, so 128 chunks.
  p = select_shape(1, 8, 8, gqa_mode::per_head, 32, int64_t(2) << 20);
  l = plan::select_layout_of(p, dev);
  EXPECT_EQ(l.n_chunks, 128);
  EXPECT_EQ(l.chunk, 16384);
  p = select_shape(33, 32, 32, gqa_mode::per_head, 32, 131072);  // 1056 lists: one wave already
  l = plan::select_layout_of(p, dev);
  EXPECT_EQ(l.n_chunks, 1);
  EXPECT_EQ(l.chunk, 131072);
  // 4 lists: 264 chunks each would be one exact wave, but a list has only 32 tiles.
  p = select_shape(1, 4, 4, gqa_mode::per_head, 32, 131072);
  EXPECT_EQ(plan::select_layout_of(p, dev).n_chunks, 32);
}

// ---- attend ----
template <int N>
int ctas_per_sm(dtype, int, int) {
  return N;
}
int calls = 0;
dtype seen_type;
int seen_dim = 0, seen_nq = 0;
int recording_ctas_per_sm(dtype t, int d, int nq) {
  ++calls;
  seen_type = t;
  seen_dim = d;
  seen_nq = nq;
  return 2;
}

int tc_ctas_per_sm_1(dtype, int) { return 1; }

// The tensor-core kernel's occupancy sizes its splits, and decode's workspace is planned the same way
// as the attend run that uses it (a mismatch once overran the workspace on the GPU).
TEST(CudaPlanAttend, TensorCoreKernelOccupancySizesTheSplits) {
  plan::device_info dev = h200();  // 4 CTAs per SM for the CUDA-core kernel
  dev.attend_tc_ctas_per_sm = tc_ctas_per_sm_1;
  attend_params p = valid_attend();
  p.batch = 1;
  p.max_ctx = 1 << 20;
  p.impl = attend_impl::cuda_cores;
  const plan::attend_layout cores = plan::attend_layout_of(p, dev);
  p.impl = attend_impl::tensor_cores;
  const plan::attend_layout tc = plan::attend_layout_of(p, dev);
  EXPECT_GT(cores.n_splits, tc.n_splits);  // fewer resident CTAs, fewer splits fill the device
  p.impl = attend_impl::automatic;         // automatic: tensor cores for lists of several query heads,
  EXPECT_EQ(plan::attend_layout_of(p, dev).n_splits, tc.n_splits);
  std::vector<int32_t> idx(1), cnt(1);     // CUDA cores for per-head lists (one query head each)
  p.idx = idx.data();
  p.idx_count = cnt.data();
  p.idx_stride = 1 << 20;
  p.per_group = false;
  const int64_t cores_head = plan::attend_layout_of(p, dev).n_splits;
  p.impl = attend_impl::tensor_cores;
  EXPECT_GT(cores_head, plan::attend_layout_of(p, dev).n_splits);
  decode_params d = valid_decode();
  d.attend = attend_impl::tensor_cores;
  const plan::decode_layout dl = plan::decode_layout_of(d, dev);
  const attend_params a = plan::decode_attend_of(d, nullptr, dl);
  EXPECT_EQ(a.impl, attend_impl::tensor_cores);
  EXPECT_EQ(dl.bytes - dl.off_att, plan::align_up(plan::attend_layout_of(a, dev).bytes));
}

TEST(CudaPlanAttend, ListsAndQueryHeadsPerList) {
  plan::device_info dev = h200();
  dev.attend_ctas_per_sm = recording_ctas_per_sm;
  attend_params p = valid_attend();  // dense, 8 query heads over 2 KV heads: a list per KV head
  p.kv.type = dtype::f16;
  calls = 0;
  plan::attend_layout l = plan::attend_layout_of(p, dev);
  EXPECT_EQ(l.n_lists, 2);
  EXPECT_EQ(l.nq, 4);
  EXPECT_EQ(calls, 1);  // the kernel the plan sizes for: f16, 64, 4 query heads per list
  EXPECT_EQ(seen_type, dtype::f16);
  EXPECT_EQ(seen_dim, 64);
  EXPECT_EQ(seen_nq, 4);
  p.idx = addr<const int32_t>(0x900000);  // per_head lists: a list per query head
  p.idx_count = addr<const int32_t>(0xa00000);
  p.idx_stride = 32;
  l = plan::attend_layout_of(p, dev);
  EXPECT_EQ(l.n_lists, 8);
  EXPECT_EQ(l.nq, 1);
  EXPECT_EQ(seen_nq, 1);
  p.per_group = true;
  l = plan::attend_layout_of(p, dev);
  EXPECT_EQ(l.n_lists, 2);
  EXPECT_EQ(l.nq, 4);
  // A given split count is taken as it is, and the device is not asked.
  calls = 0;
  p.n_splits = 5;
  l = plan::attend_layout_of(p, plan::device_info{});
  EXPECT_EQ(l.n_splits, 5);
  EXPECT_EQ(calls, 0);
}

// The split count the plan picks: >= 1, <= MAX_SPLITS, at least MIN_PER_SPLIT tokens of the longest
// list per split (but one split for a short list), never fewer for a longer list; one split needs no
// workspace; the workspace holds every index the kernel computes.
TEST(CudaPlanAttend, SplitsStayInBoundsAndGrowWithTheList) {
  for (int sms : {1, 8, 132})
    for (int ctas : {1, 3, 8})
      for (const auto& [batch, n_head, sparse] : {std::tuple{1, 8, false}, std::tuple{1, 8, true},
                                                  std::tuple{16, 32, true}, std::tuple{200, 8, false}}) {
        int prev = 1;
        for (int64_t len = 1; len <= (int64_t(1) << 22); len = len * 3 / 2 + 1) {
          attend_params p = valid_attend();
          p.batch = batch;
          p.n_head = n_head;
          p.max_ctx = sparse ? 1 << 22 : len;  // sparse: the lists' length bounds the work, not max_ctx
          if (sparse) {
            p.idx = addr<const int32_t>(0x900000);
            p.idx_count = addr<const int32_t>(0xa00000);
            p.idx_stride = len;
          }
          ASSERT_NO_THROW(plan::check_attend(p));
          plan::device_info dev = h200();
          dev.sm_count = sms;
          dev.attend_ctas_per_sm = ctas == 1 ? ctas_per_sm<1> : ctas == 3 ? ctas_per_sm<3> : ctas_per_sm<8>;
          const plan::attend_layout l = plan::attend_layout_of(p, dev);
          const std::string at = std::to_string(sms) + " SMs x " + std::to_string(ctas) + ", batch " +
                                 std::to_string(batch) + (sparse ? ", lists of " : ", context ") + std::to_string(len);
          EXPECT_GE(l.n_splits, 1) << at;
          EXPECT_LE(l.n_splits, plan::MAX_SPLITS) << at;
          EXPECT_LE(l.n_splits, std::max<int64_t>(1, (len + plan::MIN_PER_SPLIT - 1) / plan::MIN_PER_SPLIT)) << at;
          EXPECT_GE(l.n_splits, prev) << at << ": fewer splits than for a shorter list";
          prev = l.n_splits;
          EXPECT_LE(l.n_lists, GRID_YZ_MAX) << at;
          if (l.n_splits == 1) {
            EXPECT_EQ(l.bytes, 0u) << at;
            continue;
          }
          // ticket[list] (list < batch x n_lists), part_ml[hrow * n_splits + s] (float2),
          // part_o[(hrow * n_splits + s) * D + e] (hrow < batch x n_head, s < n_splits, e < D).
          const size_t lists = (size_t)batch * l.n_lists, rows = (size_t)batch * n_head * l.n_splits;
          expect_regions({l.off_ticket, l.off_ml, l.off_o}, l.bytes, {lists * 4, rows * 8, rows * 64 * 4}, at);
        }
      }
}

// Split counts worked out by hand: the fewest waves of resident CTAs per unit of work.
TEST(CudaPlanAttend, SplitsFillTheDevice) {
  plan::device_info dev = h200();  // 132 SMs x 4 = 528 resident CTAs
  attend_params p = valid_attend();
  p.batch = 4;                     // 8 lists (2 KV heads, dense)
  p.max_ctx = 131072;              // up to 128 splits
  // s <= 66: 8s CTAs fit one wave (1/s waves per split); s in 67..128 takes two (2/s >= 2/128 > 1/66).
  EXPECT_EQ(plan::attend_layout_of(p, dev).n_splits, 66);
  p.max_ctx = 1000;  // ceil(1000 / 128) = 8 splits at most
  EXPECT_EQ(plan::attend_layout_of(p, dev).n_splits, 8);
  p.batch = 264;  // 528 lists: one wave with one split, every extra split another whole wave
  p.max_ctx = 131072;
  EXPECT_EQ(plan::attend_layout_of(p, dev).n_splits, 1);
  EXPECT_EQ(plan::attend_layout_of(p, dev).bytes, 0u);
}

// ---- decode ----
TEST(CudaPlanDecode, OneWorkspaceHoldsEveryStage) {
  const plan::device_info dev = h200();
  for (gqa_mode mode : {gqa_mode::per_head, gqa_mode::per_group})
    for (int batch : {1, 5})
      for (int64_t max_ctx : {1, 31, 128, 5000, 131072}) {
        decode_params p = valid_decode();
        p.mode = mode;
        p.batch = batch;
        p.max_ctx = max_ctx;
        const int n_lists = mode == gqa_mode::per_group ? 2 : 8;
        p.codes = valid_codes(n_lists);
        p.codes.stride_enc = plan::round_up(max_ctx, 4);
        p.codes.stride_seq = p.codes.stride_enc * n_lists;
        if (mode == gqa_mode::per_group) p.key_mlp.n_enc = 2;
        const plan::decode_layout l = plan::decode_layout_of(p, dev);
        const std::string at = std::string(gqa_mode_name(mode)) + ", batch " + std::to_string(batch) +
                               ", max_ctx " + std::to_string(max_ctx);
        // idx_stride: the longest list over contexts 1 .. max_ctx (brute force), rounded up to 4.
        int64_t longest = 0;
        for (int64_t n = 1; n <= max_ctx; ++n) longest = std::max(longest, budget_tokens(p.budget, n));
        EXPECT_EQ(l.idx_stride, plan::round_up(longest, 4)) << at;
        EXPECT_EQ(l.n_lists, n_lists) << at;
        // The stages' params inside a workspace at `ws` point into their regions and are valid.
        char* ws = addr<char>(0x10000000);
        const select_params s = plan::decode_select_of(p, ws, l);
        const attend_params a = plan::decode_attend_of(p, ws, l);
        const encode_params e = plan::decode_encode_of(p, ws, l);
        EXPECT_NO_THROW(plan::check_select(s)) << at;
        EXPECT_NO_THROW(plan::check_attend(a)) << at;
        EXPECT_NO_THROW(plan::check_encode(e, dev)) << at;
        EXPECT_EQ((char*)s.qcodes, ws + l.off_qcodes) << at;
        EXPECT_EQ(e.qcodes, s.qcodes) << at;
        EXPECT_EQ((char*)s.idx_count, ws + l.off_count) << at;
        EXPECT_EQ((char*)s.idx, ws + l.off_idx) << at;
        EXPECT_EQ(a.idx, s.idx) << at;
        EXPECT_EQ(a.idx_count, s.idx_count) << at;
        EXPECT_EQ(a.idx_stride, s.idx_stride) << at;
        EXPECT_EQ(a.per_group, mode == gqa_mode::per_group) << at;
        EXPECT_EQ(s.bits, p.query_mlp.bits) << at;
        EXPECT_EQ(e.n_new, 1) << at;
        expect_regions({l.off_qcodes, l.off_count, l.off_idx, l.off_sel, l.off_att}, l.bytes,
                       {(size_t)batch * 8 * 4, (size_t)batch * n_lists * 4,
                        (size_t)batch * n_lists * l.idx_stride * 4, plan::select_layout_of(s, dev).bytes,
                        plan::attend_layout_of(a, dev).bytes},
                       at);
      }
}

TEST(CudaPlanDecode, EncodeStageFollowsAppendAndNewKeys) {
  decode_params p = valid_decode();
  plan::decode_layout l = plan::decode_layout_of(p, h200());
  p.append_kv = false;  // codes of the new token only: no K/V written
  encode_params e = plan::decode_encode_of(p, nullptr, l);
  EXPECT_EQ(e.kv.k, nullptr);
  EXPECT_EQ(e.kv.v, nullptr);
  EXPECT_EQ(e.qcodes, nullptr);  // no workspace yet
  EXPECT_EQ(e.n_new, 1);
  p.k_new = nullptr;  // K/V and codes present: queries only
  e = plan::decode_encode_of(p, nullptr, l);
  EXPECT_EQ(e.n_new, 0);
}

}  // namespace
}  // namespace hashattn::cudaplan_test
