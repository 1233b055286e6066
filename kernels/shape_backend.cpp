// ShapeBackend: each op is its check and nothing else (see shape_backend.hpp).
#include "kernels/shape_backend.hpp"

namespace sdgen {

Tensor ShapeBackend::prepare_weight(const Tensor& w, WeightUse use) {
  check_weight(support_, "prepare_weight", w, use);
  return w;
}

void ShapeBackend::linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) {
  check_linear(support_, x, w, out, args);
}

void ShapeBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) {
  check_conv2d(support_, x, w, out, args);
}

void ShapeBackend::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                              const GroupNormArgs& args) {
  check_group_norm(support_, x, gamma, beta, out, args);
}

void ShapeBackend::layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                              const LayerNormArgs& args) {
  check_layer_norm(support_, x, gamma, beta, out, args);
}

void ShapeBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const AttentionArgs& args) {
  check_attention(support_, q, k, v, out, args);
}

void ShapeBackend::geglu(const Tensor& x, const Tensor& out) { check_geglu(support_, x, out); }

void ShapeBackend::activation(const Tensor& x, const Tensor& out, Act act) { check_activation(support_, x, out, act); }

void ShapeBackend::add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) {
  check_add(support_, a, b, out, args);
}

void ShapeBackend::upsample_nearest(const Tensor& x, const Tensor& out) {
  check_upsample_nearest(support_, x, out);
}

void ShapeBackend::concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) {
  check_concat_channels(support_, a, b, out);
}

void ShapeBackend::timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& args) {
  check_timestep_embedding(support_, t, out, args);
}

void ShapeBackend::embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  check_embedding(support_, ids, table, out);
}

void ShapeBackend::upload(const Tensor& host, const Tensor& dst) { check_transfer(support_, "upload", host, dst); }
void ShapeBackend::download(const Tensor& src, const Tensor& host) { check_transfer(support_, "download", host, src); }
void ShapeBackend::convert(const Tensor& x, const Tensor& out, const ConvertArgs&) { check_convert(support_, x, out); }
void ShapeBackend::scheduler_step(std::span<const StepCoefficients> steps, int call, const StepTensors& tensors) {
  check_scheduler_step(support_, steps, call, tensors);
}

}  // namespace sdgen
