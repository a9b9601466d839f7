// Tiny random llama-family models written to GGUF in memory (no model file needed) and a float64
// forward pass written from the architecture, for the model tests:
//   llama (adjacent-pair RoPE, tied embeddings, F32 weights: float paths) and qwen2 (NEOX RoPE,
//   q/k/v biases, separate output, Q8_0 / Q4_1 weights: integer paths).
// The reference rounds K and V to fp16 like the cache (the cache format is part of the spec).
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "hashattn/gguf.h"
#include "hashattn/model.h"

namespace hashattn::tiny {

struct tiny_cfg {
  std::string arch = "llama";
  int n_layer = 2, n_embd = 64, n_head = 4, n_head_kv = 2, head_dim = 16, n_ff = 96, n_vocab = 100;
  int ctx = 64;
  float rope_base = 10000.f, eps = 1e-5f;
  bool tied = true, bias = false;
  gguf::type wtype = gguf::type::F32;  // 2-D weights (embedding included)
  gguf::type otype = gguf::type::F32;  // output.weight when not tied
};

struct ref_layer {
  std::vector<double> attn_norm, ffn_norm, bq, bk, bv;
  std::vector<double> wq, wk, wv, wo, gate, up, down;
};

struct tiny_model {
  tiny_cfg c;
  std::vector<uint8_t> file;
  std::vector<double> embd, out, out_norm;
  std::vector<ref_layer> layers;
};

// qwen2: NEOX RoPE, q/k/v biases, untied output; Q8_0 layers, Q4_1 output (the integer paths).
tiny_cfg qwen2_cfg();

// Builds the GGUF bytes and the reference weights. `drop` names a tensor to leave out, `bad_shape`
// one to write with a wrong shape (for the loader's errors).
tiny_model build(const tiny_cfg& c, uint64_t seed, const std::string& drop = {}, const std::string& bad_shape = {});
// float64 forward over a whole token sequence; returns logits [n, n_vocab].
std::vector<double> ref_forward(const tiny_model& m, const std::vector<int32_t>& toks);
std::unique_ptr<model> load(const tiny_model& m);
std::vector<int32_t> random_tokens(int n, int vocab, std::mt19937_64& rng);
// |ours - ref| <= tol * (1 + |ref|) for every logit of a row (a gtest expectation).
void expect_row_close(const float* ours, const double* ref, int n, double tol, const std::string& what);

// Tolerances (absolute + relative, per logit). Float weights: fp32 arithmetic plus the rare
// value whose fp16 rounding differs between the fp32 runtime and the float64 reference.
// Quantized weights: decode also rounds activations to 16-bit blocks (2^-16 of a block's max);
// with weights of magnitude ~1 over 64-96 inputs that is up to ~1e-3 on a logit.
constexpr double kTol = 2e-4;
constexpr double kTolQuant = 1e-3;

}  // namespace hashattn::tiny
