// ShapeBackend: runs the op set without computing anything.
//
// Every op validates its arguments with the same checks the real backends call (op_checks.hpp)
// and returns. Two uses: the planning pass, where a model runs once on ShapeBackend while a
// planning allocator records each activation's size and lifetime, so the arena is sized before
// the first real step; and shape tests, which run a full-size network in microseconds. It never
// reads or writes tensor data, so tensors may carry null (or fake) pointers.
#pragma once

#include <functional>
#include <utility>

#include "kernels/backend.hpp"
#include "kernels/op_checks.hpp"

namespace sdgen {

// The scratch memory a backend's ops need beside their operands, in bytes (a device backend's
// split-K partial sums, group norm's statistics), as functions of the op's geometry; an empty
// function means none. The backend keeps one scratch buffer for all of them (its ops run one after
// another), so a stage needs the largest single op's scratch.
struct ScratchModel {
  std::function<std::size_t(const Conv2dGeometry&)> conv2d;
  std::function<std::size_t(const GroupNormGeometry&)> group_norm;
};

class ShapeBackend final : public Backend {
 public:
  // `support`: the dtypes and device of the backend this one stands in for, so that planning
  // rejects what the real run would reject; `scratch`: its ops' scratch needs, measured over the
  // ops run here (planned_scratch_bytes).
  explicit ShapeBackend(const OpSupport& support, ScratchModel scratch = {})
      : support_(support), scratch_(std::move(scratch)) {}

  std::string_view name() const override { return "shape"; }
  std::unique_ptr<Backend> shape_only() const override { return std::make_unique<ShapeBackend>(support_, scratch_); }
  std::size_t planned_scratch_bytes() const override { return planned_scratch_; }
  // Checks w and keeps it: planning needs shapes only.
  Tensor prepare_weight(const Tensor& w, WeightUse use) override;
  DType activation_dtype() const override { return support_.activations; }
  void upload(const Tensor& host, const Tensor& dst) override;
  void download(const Tensor& src, const Tensor& host) override;
  void convert(const Tensor& x, const Tensor& out, const ConvertArgs& args) override;
  // A loop that checks each call's tensors and computes nothing.
  std::unique_ptr<DenoisingLoop> begin_denoising(std::span<const StepCoefficients> steps) override;

  void linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& args) override;
  void conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& args) override;
  void group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                  const GroupNormArgs& args) override;
  void layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& out,
                  const LayerNormArgs& args) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                 const AttentionArgs& args) override;
  void geglu(const Tensor& x, const Tensor& out) override;
  void activation(const Tensor& x, const Tensor& out, Act act) override;
  void add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) override;
  void upsample_nearest(const Tensor& x, const Tensor& out) override;
  void concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& args) override;
  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override;

 private:
  OpSupport support_;
  ScratchModel scratch_;
  std::size_t planned_scratch_ = 0;
};

}  // namespace sdgen
