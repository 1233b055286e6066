// ShapeBackend: each op is its check and nothing else (see shape_backend.hpp).
#include "kernels/shape_backend.hpp"

#include <algorithm>

namespace sdgen {

Tensor ShapeBackend::prepare_weight(const Tensor& w, WeightUse use) {
  check_weight(support_, "prepare_weight", w, use);
  return w;
}

void ShapeBackend::linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) {
  check_linear(support_, x, w, out, args);
}

void ShapeBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) {
  const Conv2dGeometry g = check_conv2d(support_, x, w, out, args);
  if (scratch_.conv2d) planned_scratch_ = std::max(planned_scratch_, scratch_.conv2d(g));
}

void ShapeBackend::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                              const GroupNormArgs& args) {
  const GroupNormGeometry g = check_group_norm(support_, x, gamma, beta, out, args);
  if (scratch_.group_norm) planned_scratch_ = std::max(planned_scratch_, scratch_.group_norm(g));
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
namespace {

class ShapeDenoisingLoop final : public DenoisingLoop {
 public:
  ShapeDenoisingLoop(const OpSupport& support, std::span<const StepCoefficients> steps)
      : support_(support), steps_(steps) {}
  int call() const override { return call_; }
  void run(const std::function<void()>& step) override { step(); }
  void model_input(const Tensor& latents, const Tensor& unet_in, const Tensor& t) override {
    check_model_input(support_, steps_, call_, latents, unet_in, t);
  }
  void scheduler_step(const StepTensors& tensors) override {
    check_scheduler_step(support_, steps_, call_, tensors);
    ++call_;
  }

 private:
  OpSupport support_;
  std::span<const StepCoefficients> steps_;
  int call_ = 0;
};

}  // namespace

std::unique_ptr<DenoisingLoop> ShapeBackend::begin_denoising(std::span<const StepCoefficients> steps) {
  return std::make_unique<ShapeDenoisingLoop>(support_, steps);
}

}  // namespace sdgen
