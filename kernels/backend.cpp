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

void Backend::scheduler_step(std::span<const StepCoefficients> steps, int call, const StepTensors& t) {
  const std::int64_t n = check_scheduler_step(kHostF32, steps, call, t);
  StepHostBuffers host{.model_output = t.model_output.ptr<const float>(),
                       .sample = t.sample.ptr<float>(),
                       .noise = t.noise ? t.noise->ptr<const float>() : nullptr,
                       .elements = n};
  for (int slot = 0; slot < kStepHistorySlots; ++slot)
    if (const Tensor* h = t.history[static_cast<std::size_t>(slot)]) host.history[static_cast<std::size_t>(slot)] = h->ptr<float>();
  apply_step_coefficients(steps[static_cast<std::size_t>(call)], host);
}

}  // namespace sdgen
