// One decode step over several sequences (session-impl.h decode_rows): shared by the branch decoder
// (branches of one prompt) and the batch engine (unrelated sequences at their own positions).
// embed n rows -> per layer [layer_qkv (RoPE at each row's position); per row: K/V row into its
// sequence's page, policy.on_append, attention over the sequence's paged view (a sliding-window
// layer's window; else dense, or select + sparse kernel); layer_out_ffn] -> logits [n, n_vocab].
#include <algorithm>
#include <cmath>

#include "cpu/model-ops.h"
#include "hashattn/error.h"
#include "model/session-impl.h"

namespace hashattn {

void session::impl::decode_rows(const seq_row* rows, const int32_t* toks, int64_t n, float* out, wpath wp) {
  const model::impl& W = *w;
  const int64_t rr = rope_row();
  const int qd = q_dim;
  rows_resize(n);
  CS.resize((size_t)n * rr);
  SN.resize((size_t)n * rr);
  rows_embed(toks, n);
  for (int64_t r = 0; r < n; ++r) {
    HASHATTN_ASSERT(rows[r].seq->capacity() > rows[r].pos);
    rope_row_angles(rows[r].pos, CS.data() + r * rr, SN.data() + r * rr);
  }
  for (int l = 0; l < hp.n_layer; ++l) {
    const layer_weights& L = W.layers[l];
    layer_qkv(L, n, CS.data(), SN.data(), rr, wp);
    for (int64_t r = 0; r < n; ++r) {
      const seq_row& R = rows[r];
      const float* q = Q.data() + r * qd;
      float* k = K.data() + r * kv_dim;
      cpu::f32_to_f16_row(k, R.seq->k_row(l, R.pos), kv_dim);
      cpu::f32_to_f16_row(V.data() + r * kv_dim, R.seq->v_row(l, R.pos), kv_dim);
      if (observer) observer(l, q, k, V.data() + r * kv_dim, R.pos, 1);
      cpu::f16_to_f32_row(R.seq->k_row(l, R.pos), k, kv_dim);  // the policy sees the cached (fp16) key
      R.pol->on_append(l, k, R.pos, 1);
      attn_decode_params ap;
      ap.q = q;
      ap.kv = R.seq->view(l, R.pos + 1);
      ap.n_head = hp.n_head;
      ap.scale = hp.attn_scale;
      ap.out = A.data() + r * qd;
      ap.n_threads = nt;
      double attended = (double)(R.pos + 1);
      if (window_lists(l, R.pos, lists)) {  // a sliding-window layer: its window, whatever the policy
        attn_params_set_lists(ap, lists);
        attended = (double)lists.count[0];
      } else if (!R.pol->is_dense()) {
        R.pol->select(l, q, ap.kv, lists);
        attn_params_set_lists(ap, lists);
        if (R.attended) attended = lists.mean_count();
      }
      if (R.attended) *R.attended += attended;
      if (R.context) *R.context += (double)(R.pos + 1);
      be->call_attend(ap);
    }
    layer_out_ffn(L, n, wp);
  }
  for (int64_t r = 0; r < n; ++r) rows[r].seq->set_length(rows[r].pos + 1);
  rows_logits(n, out, wp);
}

}  // namespace hashattn
