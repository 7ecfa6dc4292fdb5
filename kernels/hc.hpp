// Hyper-connections: hc_pre (mixing + Sinkhorn), hc_post, hc_head. Spec §5.2, §5.8; kernel.py
// hc_split_sinkhorn. All internals fp32; only the mixed stream y and the new residual are bf16.
#pragma once
#include <cstdint>
#include <span>

#include "kernels/numerics.hpp"

namespace dsv4::kernels {

// Shapes of one hyper-connection site.
struct HcDims {
  int hc;          // hc_mult (4)
  int dim;         // model dim D
  int sinkhorn_iters;  // hc_sinkhorn_iters (20)
  float norm_eps;  // norm_eps (1e-6): inside the rsqrt of the mixing
  float hc_eps;    // hc_eps (1e-6): sigmoid offset and Sinkhorn epsilon
};

// Block.hc_pre. y: bf16 [rows, D]; post: fp32 [rows, hc]; comb: fp32 [rows, hc, hc] (row j, column k);
// h: bf16 [rows, hc, D] residual streams; fn: fp32 [(2+hc)·hc, hc·D]; scale: fp32 [3]; base: fp32 [(2+hc)·hc].
void hc_pre(std::span<bf16> y, std::span<float> post, std::span<float> comb, std::span<const bf16> h,
            std::span<const float> fn, std::span<const float> scale, std::span<const float> base, const HcDims& d);

// Block.hc_post: out_k = bf16(post_k·x + Σ_j comb[j][k]·res_j) — the sum runs over comb's FIRST index.
// out: bf16 [rows, hc, D] (must not alias res); x: bf16 [rows, D]; res: bf16 [rows, hc, D];
// post: fp32 [rows, hc]; comb: fp32 [rows, hc, hc].
void hc_post(std::span<bf16> out, std::span<const bf16> x, std::span<const bf16> res, std::span<const float> post,
             std::span<const float> comb, const HcDims& d);

// ParallelHead.hc_head: y = bf16(Σ_j (sigmoid(m_j·scale + base_j) + hc_eps) · X_j), no Sinkhorn.
// y: bf16 [rows, D]; h: bf16 [rows, hc, D]; fn: fp32 [hc, hc·D]; scale: fp32 [1]; base: fp32 [hc].
void hc_head(std::span<bf16> y, std::span<const bf16> h, std::span<const float> fn, std::span<const float> scale,
             std::span<const float> base, const HcDims& d);

// hc_split_sinkhorn on one row of mixes (exposed for tests). mixes: fp32 [(2+hc)·hc]; pre, post: fp32 [hc];
// comb: fp32 [hc, hc]; scale: fp32 [3]; base: fp32 [(2+hc)·hc].
void hc_split_sinkhorn(float* pre, float* post, float* comb, const float* mixes, const float* scale,
                       const float* base, int hc, int iters, float eps);

}  // namespace dsv4::kernels
