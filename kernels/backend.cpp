// The default memory and step ops of Backend: those of a backend that computes in host memory
// with F32 activations (the CPU backend, the tests' reference backend). A device backend
// overrides every one of them.
#include "kernels/backend.hpp"

#include <cstring>

#include "kernels/op_checks.hpp"

namespace sdgen {

namespace {

const OpSupport kHostF32{};  // the CPU, F32 activations

}  // namespace

void Backend::upload(const Tensor& host, const Tensor& dst) {
  check_transfer(kHostF32, "upload", host, dst);
  std::memcpy(dst.data, host.data, host.nbytes());
}

void Backend::download(const Tensor& src, const Tensor& host) {
  check_transfer(kHostF32, "download", host, src);
  std::memcpy(host.data, src.data, host.nbytes());
}

void Backend::convert(const Tensor& x, const Tensor& out, const ConvertArgs& args) {
  const std::int64_t n = check_convert(kHostF32, x, out);
  const float* in = x.ptr<const float>();
  float* o = out.ptr<float>();
  for (std::int64_t i = 0; i < n; ++i) o[i] = in[i] * args.scale + args.shift;
}

namespace {

// The loop on the host: every call runs its step as it comes, reading the table in host memory.
class HostDenoisingLoop final : public DenoisingLoop {
 public:
  explicit HostDenoisingLoop(std::span<const StepCoefficients> steps) : steps_(steps) {}

  int call() const override { return call_; }
  void run(const std::function<void()>& step) override { step(); }

  void model_input(const Tensor& latents, const Tensor& unet_in, const Tensor& t) override {
    const auto n = static_cast<std::size_t>(check_model_input(kHostF32, steps_, call_, latents, unet_in, t));
    const StepCoefficients& c = steps_[static_cast<std::size_t>(call_)];
    const float* in = latents.ptr<const float>();
    float* out = unet_in.ptr<float>();
    const auto total = static_cast<std::size_t>(unet_in.numel());
    for (std::size_t i = 0; i < total; ++i) out[i] = in[i % n] * c.input_scale;
    float* timesteps = t.ptr<float>();
    for (std::int64_t row = 0; row < t.shape[0]; ++row) timesteps[row] = c.timestep;
  }

  void scheduler_step(const StepTensors& t) override {
    const std::int64_t n = check_scheduler_step(kHostF32, steps_, call_, t);
    StepHostBuffers host{.model_output = t.model_output.ptr<const float>(),
                         .sample = t.sample.ptr<float>(),
                         .noise = t.noise ? t.noise->ptr<const float>() : nullptr,
                         .elements = n};
    for (int slot = 0; slot < kStepHistorySlots; ++slot)
      if (const Tensor* h = t.history[static_cast<std::size_t>(slot)])
        host.history[static_cast<std::size_t>(slot)] = h->ptr<float>();
    apply_step_coefficients(steps_[static_cast<std::size_t>(call_)], host);
    ++call_;
  }

 private:
  std::span<const StepCoefficients> steps_;
  int call_ = 0;
};

}  // namespace

std::unique_ptr<DenoisingLoop> Backend::begin_denoising(std::span<const StepCoefficients> steps) {
  return std::make_unique<HostDenoisingLoop>(steps);
}

}  // namespace sdgen
