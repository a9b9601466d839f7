// Random (untrained) hash encoders bound to a model (include/hashattn/synthetic-model.h): the shape
// rule of the hash module, its seeded initialisation and its file writer, with the model's binding.
#include <fmt/core.h>

#include "hashattn/error.h"
#include "hashattn/hash-file.h"
#include "hashattn/model.h"
#include "hashattn/synthetic-model.h"

namespace hashattn {

void synthetic_hash_validate(const synthetic_hash_params& p, int n_layer, int n_head, int n_head_kv, int head_dim) {
  hash_weights_check_shape(n_layer, n_head, n_head_kv, head_dim, p.bits, p.mlp_layers, p.hidden);
}

void synthetic_hash_write(const model& m, const std::string& path, const synthetic_hash_params& p) {
  const model_hparams& hp = m.hparams();
  const bool per_group = p.gqa == gqa_mode::per_group;
  hash_weights w =
      hash_weights_alloc(hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, p.bits, p.mlp_layers, p.hidden, per_group);
  hash_weights_init_random(w, p.seed);
  hash_train_info info;
  info.settings = fmt::format("untrained: random initialisation, seed={} bits={} mlp_layers={} hidden={} gqa={}",
                              p.seed, w.bits, w.mlp_layers, w.hidden, per_group ? "group" : "head");
  hash_file_save(path, w, model_hash_binding(m), info);
}

}  // namespace hashattn
