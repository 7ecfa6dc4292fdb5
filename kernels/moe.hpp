// MoE routing gate, clamped SwiGLU and the expert combine (spec §5.7, model.py Gate / Expert / MoE).
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

// Gate from fp32 logits: sc = sqrt(softplus(logits)) (beta 1, threshold 20). Experts: tid2eid[token_id] when
// tid2eid is non-empty (hash layers), else top-k of sc + bias (bias only for the selection; ties to the lower
// id). w = sc[idx] / Σ sc[idx] · route_scale.
// weights: fp32 [rows, k]; indices: int32 [rows, k] (in selection order); scores: fp32 [rows, E] (the unbiased
// scores, written for traces; may be empty); logits: fp32 [rows, E]; bias: fp32 [E] or empty;
// tid2eid: int64 [vocab, k] or empty; token_ids: int32 [rows] (read only for hash layers).
void moe_gate(std::span<float> weights, std::span<int32_t> indices, std::span<float> scores,
              std::span<const float> logits, std::span<const float> bias, std::span<const int64_t> tid2eid,
              std::span<const int32_t> token_ids, int n_experts, int k, float route_scale);

// Clamped SwiGLU: a = silu(min(g, limit)) · clamp(u, ±limit) in fp32, times the routing weight of the row
// when route_w is non-empty (routed experts), rounded to bf16 as the input of w2.
// a: bf16 [rows, inter]; g, u: bf16 [rows, inter] (w1 and w3 outputs); route_w: fp32 [rows] or empty.
void swiglu(std::span<bf16> a, std::span<const bf16> g, std::span<const bf16> u, std::span<const float> route_w,
            int inter, float limit);

// y = bf16(Σ_{experts in ascending id} out_e + shared), accumulated in fp32.
// y: bf16 [rows, dim]; expert_out: bf16 [rows, k, dim], slot i is the output of expert indices[row, i];
// indices: int32 [rows, k]; shared: bf16 [rows, dim].
void moe_combine(std::span<bf16> y, std::span<const bf16> expert_out, std::span<const int32_t> indices,
                 std::span<const bf16> shared, int k, int dim);

}  // namespace dsv4::kernels
