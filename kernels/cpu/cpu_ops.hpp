// The CPU kernels behind CpuBackend's entry points. Each takes the geometry its check returned
// (op_checks.hpp), so the arguments are already validated; none of them re-checks.
#pragma once

#include "kernels/cpu/cpu_context.hpp"
#include "kernels/op_checks.hpp"

namespace sdgen::cpu {

// gemm.cpp
void linear(Context& ctx, const LinearGeometry& g, const Tensor& x, const Tensor& w, const Tensor& out,
            const LinearArgs& args);
// The blocked layout the matmul kernels want for a Linear weight [n, k].
dnnl::memory::desc linear_weight_layout(Context& ctx, std::int64_t n, std::int64_t k);

// conv2d.cpp
void conv2d(Context& ctx, const Conv2dGeometry& g, const Tensor& x, const Tensor& w, const Tensor& out,
            const Conv2dArgs& args);
// The blocked layout the convolution kernels want for an OHWI weight (chosen for a stride-1,
// same-padding problem; conv2d re-lays it out once if a call wants another).
dnnl::memory::desc conv_weight_layout(Context& ctx, const Shape& ohwi);

// norms.cpp
void group_norm(Context& ctx, const GroupNormGeometry& g, const float* x, const float* gamma, const float* beta,
                float* out, const GroupNormArgs& args);
void layer_norm(Context& ctx, const LayerNormGeometry& g, const float* x, const float* gamma, const float* beta,
                float* out, const LayerNormArgs& args);

// attention.cpp
void attention(Context& ctx, const AttentionGeometry& g, const float* q, const float* k, const float* v, float* out);

// elementwise.cpp
void geglu(Context& ctx, const GegluGeometry& g, const float* x, float* out);
void activation(Context& ctx, std::int64_t n, const float* x, float* out, Act act);
void add(Context& ctx, const AddGeometry& g, const float* a, const float* b, float* out, const AddArgs& args);
void upsample_nearest(Context& ctx, const UpsampleGeometry& g, const float* x, float* out);
void concat_channels(Context& ctx, const ConcatGeometry& g, const float* a, const float* b, float* out);
void timestep_embedding(Context& ctx, const TimestepGeometry& g, const float* t, float* out,
                        const TimestepEmbeddingArgs& args);
// Throws when an id is outside [0, vocab), before anything is written.
void embedding(Context& ctx, const EmbeddingGeometry& g, const std::int32_t* ids, const float* table, float* out);

}  // namespace sdgen::cpu
