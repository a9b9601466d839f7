// The inputs of policies bound to a model (model.h): hash encoders loaded from a hash file that must
// match the model, and Double Sparsity channels calibrated on a text's post-RoPE q and k.
#include <string>

#include "hashattn/error.h"
#include "hashattn/hash-file.h"
#include "hashattn/model.h"

namespace hashattn {

hash_binding model_hash_binding(const model& m) {
  const auto& hp = m.hparams();
  return hash_binding_for(m.file(), hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim);
}

std::shared_ptr<const hash_weights> hash_weights_load_for(const model& m, const std::string& path) {
  const hash_binding expect = model_hash_binding(m);
  hash_file_contents c = hash_file_load(path, &expect);
  return std::make_shared<hash_weights>(std::move(c.weights));
}

std::vector<int32_t> double_sparsity_calibrate_model(const model& m, const std::vector<int32_t>& tokens, int channels,
                                                     int n_threads) {
  const int64_t n = (int64_t)tokens.size();
  if (n < 64) fail("Double Sparsity calibration text", std::to_string(n) + " tokens", ">= 64 tokens");
  const auto& hp = m.hparams();
  const layer_shape shape{hp.n_head, hp.n_head_kv, hp.head_dim};
  std::vector<std::vector<float>> qs(hp.n_layer), ks(hp.n_layer);
  session_params sp;
  sp.n_ctx = n;
  sp.n_threads = n_threads;
  sp.observer = [&](int layer, const float* q, const float* k, const float*, int64_t, int64_t cnt) {
    qs[layer].insert(qs[layer].end(), q, q + cnt * hp.n_head * hp.head_dim);
    ks[layer].insert(ks[layer].end(), k, k + cnt * hp.n_head_kv * hp.head_dim);
  };
  session s(m, sp);
  s.eval(tokens.data(), n);
  std::vector<int32_t> out;
  for (int l = 0; l < hp.n_layer; ++l) {
    auto ch = double_sparsity_calibrate(qs[l].data(), n, ks[l].data(), n, shape, channels);
    out.insert(out.end(), ch.begin(), ch.end());
  }
  return out;
}

}  // namespace hashattn
