// Running out of device memory before the denoising loop: the message says what would fit.
//
// No GPU runs here, so the device is played by the CPU backend behind a wrapper whose allocator
// refuses past a cap, exactly as the CUDA backend's does under --max-vram (DeviceMemoryError with
// the bytes still available). The advice comes from planning the UNet step's arena at smaller
// batches and sizes; the test checks it against plans made independently with the same planner.
#include <catch2/catch.hpp>

#include "kernels/cpu/cpu_backend.hpp"
#include "lib/core/error.hpp"
#include "lib/pipeline/txt2img.hpp"
#include "tests/support/paths.hpp"

using namespace sdgen;

namespace {

// Host memory with a cap, failing as the CUDA backend's DeviceMemory does; it records its peak.
class CappedMemory final : public Allocator {
 public:
  Block acquire(std::size_t bytes) override {
    if (heap_.bytes_in_use() + bytes > cap)
      throw DeviceMemoryError(cat("out of device memory: an activation buffer needs ", bytes, " bytes more"), bytes,
                              cap - heap_.bytes_in_use());
    return heap_.acquire(bytes);
  }
  void release(std::size_t token) noexcept override { heap_.release(token); }
  Device device() const override { return heap_.device(); }
  std::size_t peak() const { return heap_.peak_bytes(); }

  std::size_t cap = SIZE_MAX;

 private:
  HeapAllocator heap_;
};

// The CPU backend with a capped allocator: every op is the CPU backend's.
class CappedBackend final : public Backend {
 public:
  std::string_view name() const override { return "capped"; }
  Tensor prepare_weight(const Tensor& w, WeightUse use) override { return cpu_.prepare_weight(w, use); }
  std::unique_ptr<Backend> shape_only() const override { return cpu_.shape_only(); }
  Allocator& allocator() override { return memory_; }
  void linear(const Tensor& x, const Tensor& w, const Tensor& out, const LinearArgs& a) override { cpu_.linear(x, w, out, a); }
  void conv2d(const Tensor& x, const Tensor& w, const Tensor& out, const Conv2dArgs& a) override { cpu_.conv2d(x, w, out, a); }
  void group_norm(const Tensor& x, const Tensor& g, const Tensor& b, const Tensor& out, const GroupNormArgs& a) override {
    cpu_.group_norm(x, g, b, out, a);
  }
  void layer_norm(const Tensor& x, const Tensor& g, const Tensor& b, const Tensor& out, const LayerNormArgs& a) override {
    cpu_.layer_norm(x, g, b, out, a);
  }
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const AttentionArgs& a) override {
    cpu_.attention(q, k, v, out, a);
  }
  void geglu(const Tensor& x, const Tensor& out) override { cpu_.geglu(x, out); }
  void activation(const Tensor& x, const Tensor& out, Act act) override { cpu_.activation(x, out, act); }
  void add(const Tensor& a, const Tensor* b, const Tensor& out, const AddArgs& args) override { cpu_.add(a, b, out, args); }
  void upsample_nearest(const Tensor& x, const Tensor& out) override { cpu_.upsample_nearest(x, out); }
  void concat_channels(const Tensor& a, const Tensor& b, const Tensor& out) override { cpu_.concat_channels(a, b, out); }
  void timestep_embedding(const Tensor& t, const Tensor& out, const TimestepEmbeddingArgs& a) override {
    cpu_.timestep_embedding(t, out, a);
  }
  void embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override { cpu_.embedding(ids, table, out); }

  CappedMemory memory_;

 private:
  CpuBackend cpu_;
};

}  // namespace

TEST_CASE("running out of device memory before the loop names a batch that fits", "[pipeline][memory]") {
  const auto model = weights::open_model({.model = test::data_dir() / "models" / "tiny"});
  CappedBackend backend;
  pipeline::Pipeline pipe(model, backend);
  const auto request = [](int batch) {
    return pipeline::GenerateRequest{.prompt = "a fox", .width = 64, .height = 64, .steps = 1, .batch = batch};
  };
  // The peaks without a cap. At batch 24 the guided UNet step (48 rows) outweighs the VAE decode,
  // which runs one image at a time whatever the batch, so a cap just under that peak fails at the
  // step's arena, before the loop.
  pipe.generate(request(1));
  const std::size_t peak_one = backend.memory_.peak();
  CappedBackend big;
  pipeline::Pipeline big_pipe(model, big);
  big_pipe.generate(request(24));
  const std::size_t peak_many = big.memory_.peak();
  REQUIRE(peak_many > 2 * peak_one);

  CappedBackend capped;
  capped.memory_.cap = peak_many - 1;
  pipeline::Pipeline capped_pipe(model, capped);
  std::string message;
  try {
    capped_pipe.generate(request(24));
  } catch (const DeviceMemoryError& e) {
    message = e.what();
  }
  INFO(message);
  REQUIRE_THAT(message, Catch::StartsWith("out of device memory") && Catch::Contains("What would fit: --batch "));
  // The advice is checked by doing it: the batch it names runs under the same cap, and one more does not.
  const auto at = message.find("--batch ") + 8;
  const int advised = std::stoi(message.substr(at));
  INFO("advised batch " << advised);
  REQUIRE(advised >= 1);
  REQUIRE(advised < 24);
  CHECK_NOTHROW(capped_pipe.generate(request(advised)));
  CHECK_THROWS_AS(capped_pipe.generate(request(advised + 1)), DeviceMemoryError);
}
