// make_policy: builds a policy from policy_config by name (see policy.h for the list).
#include "hashattn/error.h"
#include "hashattn/policy.h"

namespace hashattn {

std::unique_ptr<attention_policy> make_hash_policy(const policy_config& cfg);
std::unique_ptr<attention_policy> make_simhash_policy(const policy_config& cfg);
std::unique_ptr<attention_policy> make_simhash_wide_policy(const policy_config& cfg);
std::unique_ptr<attention_policy> make_oracle_policy(const policy_config& cfg);
std::unique_ptr<attention_policy> make_streaming_policy(const policy_config& cfg);
std::unique_ptr<attention_policy> make_quest_policy(const policy_config& cfg);
std::unique_ptr<attention_policy> make_double_sparsity_policy(const policy_config& cfg);

const char* policy_names() { return "dense, hash, simhash, oracle, streaming, quest, double_sparsity"; }

std::unique_ptr<attention_policy> make_policy(const policy_config& cfg) {
  const std::string& n = cfg.name;
  if (n == "dense") return make_dense_policy();
  if (n == "hash") return make_hash_policy(cfg);
  if (n == "simhash") return cfg.bits > 64 ? make_simhash_wide_policy(cfg) : make_simhash_policy(cfg);
  if (n == "oracle") return make_oracle_policy(cfg);
  if (n == "streaming") return make_streaming_policy(cfg);
  if (n == "quest") return make_quest_policy(cfg);
  if (n == "double_sparsity" || n == "double-sparsity" || n == "ds") return make_double_sparsity_policy(cfg);
  fail("attention policy", "'" + n + "'", std::string("one of ") + policy_names());
}

}  // namespace hashattn
