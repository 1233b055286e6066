// The weight store: each parameter converted once to the backend's dtype and layout, used in
// place when the file already holds exactly that, or handed to a backend that packs it.
//
// A small checkpoint written by the test holds one tensor of each kind: an F16 3x3 convolution
// weight (must become OHWI F32), a BF16 1x1 projection (must become a [out, in] F32 matrix), and
// F32 vectors (used in place). Every stored value is a small multiple of 1/8, exact in F16, BF16
// and F32, so each converted element must equal the value written, exactly, at the index the
// layout rule gives.
#include <catch2/catch.hpp>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/shape_backend.hpp"
#include "lib/core/half.hpp"
#include "lib/models/weight_binding.hpp"
#include "lib/nn/layers.hpp"
#include "lib/nn/weight_store.hpp"
#include "tests/models/fixture_model.hpp"
#include "weights/safetensors.hpp"

namespace {

namespace nn = sdgen::nn;
using sdgen::DType;

struct TinyModule {
  nn::GroupNorm norm{{.num_groups = 1, .num_channels = 2}};
  nn::Conv2d conv{{.in_channels = 2, .out_channels = 3, .kernel_size = 3, .padding = 1}};
  nn::Linear proj{{.in_features = 4, .out_features = 4, .stored = nn::Linear::Stored::Conv1x1}};
  nn::Embedding table{{.num_embeddings = 5, .embedding_dim = 2}};

  template <class V>
  void visit(V& v) {
    v("norm", norm);
    v("conv", conv);
    v("proj", proj);
    v("table", table);
  }
};

// value(i) = (i mod 29 - 14) / 8: exact in every dtype involved.
float value(std::size_t i) { return static_cast<float>(static_cast<int>(i % 29) - 14) / 8.0f; }

std::vector<float> values(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = value(i);
  return v;
}

template <class Encode>
std::vector<std::uint16_t> halves(std::size_t n, Encode encode) {
  std::vector<std::uint16_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = encode(value(i));
  return v;
}

std::span<const std::byte> bytes_of(const auto& v) { return std::as_bytes(std::span(v)); }

// The checkpoint: F32 vectors first (their offsets stay 4-aligned), then the halves.
class Checkpoint {
 public:
  // The process id keeps concurrent runs of this test (several build trees) apart.
  Checkpoint()
      : path_(std::filesystem::temp_directory_path() /
              ("sdgen_weight_store_test_" + std::to_string(getpid()) + ".safetensors")) {
    const auto vec2 = values(2), vec3 = values(3), vec4 = values(4), table = values(5 * 2);
    const auto conv = halves(3 * 2 * 3 * 3, sdgen::f32_to_f16);
    const auto proj = halves(4 * 4, sdgen::f32_to_bf16);
    const std::vector<sdgen::weights::TensorToWrite> tensors = {
        {"norm.weight", DType::F32, {2}, bytes_of(vec2)},
        {"norm.bias", DType::F32, {2}, bytes_of(vec2)},
        {"conv.bias", DType::F32, {3}, bytes_of(vec3)},
        {"proj.bias", DType::F32, {4}, bytes_of(vec4)},
        {"table.weight", DType::F32, {5, 2}, bytes_of(table)},
        {"conv.weight", DType::F16, {3, 2, 3, 3}, bytes_of(conv)},
        {"proj.weight", DType::BF16, {4, 4, 1, 1}, bytes_of(proj)},
    };
    sdgen::weights::write_safetensors(path_, tensors);
    file_ = std::make_unique<sdgen::weights::SafeTensorsFile>(path_);
    tensors_ = sdgen::test::tensors_of(*file_);
  }
  ~Checkpoint() { std::filesystem::remove(path_); }

  void bind(TinyModule& m) const { sdgen::models::require_complete(sdgen::models::bind_weights("tiny", m, tensors_)); }
  bool inside(const void* p) const {
    const auto all = file_->bytes(file_->tensors().front());
    const auto* b = static_cast<const std::byte*>(p);
    return b >= all.data() && b < all.data() + file_->file_size();
  }

 private:
  std::filesystem::path path_;
  std::unique_ptr<sdgen::weights::SafeTensorsFile> file_;
  sdgen::weights::ComponentTensors tensors_;
};

float f32_at(const sdgen::Tensor& t, std::int64_t i) { return t.ptr<const float>()[i]; }

// The resident size (kB) of the mapping that contains `p`, from /proc/self/smaps.
std::int64_t resident_kb_of_mapping(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    std::uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream header(line);
    if (header >> std::hex >> begin >> dash >> end && dash == '-') {
      inside = begin <= address && address < end;
    } else if (inside && line.starts_with("Rss:")) {
      return std::stoll(line.substr(4));
    }
  }
  return -1;
}

struct Linears {
  std::vector<nn::Linear> layers;
  template <class V>
  void visit(V& v) {
    v("layers", layers);
  }
};

}  // namespace

TEST_CASE("the weight store converts dtypes, re-lays out convolutions and uses F32 in place", "[models][store]") {
  const Checkpoint checkpoint;
  TinyModule m;
  checkpoint.bind(m);
  // ShapeBackend keeps every weight as given, so the store must hold the converted copies itself.
  sdgen::ShapeBackend backend(sdgen::CpuBackend::op_support());
  const nn::WeightStore store(backend, {}, nn::named_params(m));

  SECTION("convolution: F16 OIHW -> F32 OHWI") {
    const sdgen::Tensor& w = m.conv.weight.value;
    REQUIRE(w.shape == sdgen::Shape{3, 3, 3, 2});
    REQUIRE(w.dtype == DType::F32);
    REQUIRE(w.is_contiguous());
    for (std::int64_t o = 0; o < 3; ++o)
      for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t kh = 0; kh < 3; ++kh)
          for (std::int64_t kw = 0; kw < 3; ++kw) {
            const auto stored = static_cast<std::size_t>(((o * 2 + i) * 3 + kh) * 3 + kw);
            CHECK(f32_at(w, ((o * 3 + kh) * 3 + kw) * 2 + i) == value(stored));
          }
    CHECK_FALSE(checkpoint.inside(w.data));
  }

  SECTION("1x1 projection: BF16 [4, 4, 1, 1] -> F32 [4, 4]") {
    const sdgen::Tensor& w = m.proj.weight.value;
    REQUIRE(w.shape == sdgen::Shape{4, 4});
    REQUIRE(w.dtype == DType::F32);
    for (std::int64_t i = 0; i < 16; ++i) CHECK(f32_at(w, i) == value(static_cast<std::size_t>(i)));
  }

  SECTION("F32 vectors are copied out of the mapping") {
    // Nothing is read from the file after load (weight_store.hpp says why).
    for (const auto* p : {&m.norm.weight, &m.norm.bias, &m.conv.bias, &m.proj.bias.value()}) {
      CHECK_FALSE(checkpoint.inside(p->value.data));
      CHECK(p->value.shape == sdgen::Shape{p->shape[0]});
      CHECK(f32_at(p->value, 1) == value(1));
    }
    // The two converted weights and the four vectors, each at a 64-byte aligned offset.
    CHECK(store.owned_bytes() == 256 + 64 + 4 * 64);
  }

  SECTION("an F32 table is gathered from in place") {
    CHECK(checkpoint.inside(m.table.weight.value.data));
    CHECK(m.table.weight.value.shape == sdgen::Shape{5, 2});
    CHECK(f32_at(m.table.weight.value, 7) == value(7));
    CHECK(store.mapped_bytes() == 5 * 2 * sizeof(float));
  }
}

TEST_CASE("the weight store converts to BF16 matrices", "[models][store]") {
  const Checkpoint checkpoint;
  TinyModule m;
  checkpoint.bind(m);
  sdgen::ShapeBackend backend({.weights = {DType::F32, DType::BF16}});
  const nn::WeightStore store(backend, {.matrices = DType::BF16}, nn::named_params(m));
  const sdgen::Tensor& w = m.conv.weight.value;
  REQUIRE(w.dtype == DType::BF16);
  // The values are exact in bf16: the bits are the float's upper half.
  const auto* bits = w.ptr<const std::uint16_t>();
  CHECK(bits[1] == std::bit_cast<std::uint32_t>(value(9)) >> 16);  // [o 0, kh 0, kw 0, i 1] = stored [0, 1, 0, 0]
  CHECK(m.norm.weight.value.dtype == DType::F32);
}

TEST_CASE("with a packing backend the store keeps only what the backend did not take", "[models][store]") {
  const Checkpoint checkpoint;
  TinyModule m;
  checkpoint.bind(m);
  sdgen::CpuBackend backend;
  const nn::WeightStore store(backend, {}, nn::named_params(m));
  CHECK(m.conv.weight.value.layout == sdgen::Layout::Packed);
  CHECK(m.proj.weight.value.layout == sdgen::Layout::Packed);
  CHECK(m.conv.weight.value.shape == sdgen::Shape{3, 3, 3, 2});
  // The weights went to the backend; the store holds the four vectors, each 64-byte aligned.
  CHECK(store.owned_bytes() == 4 * 64);
  CHECK(backend.held_bytes() > 0);
}

TEST_CASE("the weight store refuses an unbound parameter, naming it", "[models][store]") {
  TinyModule m;
  sdgen::ShapeBackend backend(sdgen::CpuBackend::op_support());
  CHECK_THROWS_WITH(nn::WeightStore(backend, {}, nn::named_params(m)), Catch::Contains("'norm.weight'"));
}

TEST_CASE("describe_weights gives shape-only tensors in the computed layout", "[models][store]") {
  TinyModule m;
  nn::describe_weights({.matrices = DType::BF16}, nn::named_params(m));
  CHECK(m.conv.weight.value.shape == sdgen::Shape{3, 3, 3, 2});
  CHECK(m.conv.weight.value.dtype == DType::BF16);
  CHECK(m.conv.weight.value.data == nullptr);
  CHECK(m.proj.weight.value.shape == sdgen::Shape{4, 4});
  CHECK(m.norm.bias.value.shape == sdgen::Shape{2});
  CHECK(m.norm.bias.value.dtype == DType::F32);
}

TEST_CASE("the store gives back the mapped pages of the tensors it consumed", "[models][store]") {
  // 8 F32 [256, 256] weights (2 MiB) that the CPU backend packs, and their biases, which the
  // store copies.
  constexpr int kLayers = 8, kWidth = 256;
  const auto path = std::filesystem::temp_directory_path() /
                    ("sdgen_weight_store_pages_" + std::to_string(getpid()) + ".safetensors");
  {
    const auto w = values(kWidth * kWidth), b = values(kWidth);
    std::vector<sdgen::weights::TensorToWrite> tensors;
    for (int i = 0; i < kLayers; ++i)
      tensors.push_back({"layers." + std::to_string(i) + ".bias", DType::F32, {kWidth}, bytes_of(b)});
    for (int i = 0; i < kLayers; ++i)
      tensors.push_back({"layers." + std::to_string(i) + ".weight", DType::F32, {kWidth, kWidth}, bytes_of(w)});
    sdgen::weights::write_safetensors(path, tensors);
  }
  const sdgen::weights::SafeTensorsFile file(path);
  std::filesystem::remove(path);  // the mapping keeps the data
  Linears m;
  for (int i = 0; i < kLayers; ++i)
    m.layers.emplace_back(nn::Linear::Options{.in_features = kWidth, .out_features = kWidth});
  const auto tensors = sdgen::test::tensors_of(file);
  sdgen::models::require_complete(sdgen::models::bind_weights("linears", m, tensors));

  sdgen::CpuBackend backend;
  const nn::WeightStore store(backend, {}, nn::named_params(m));
  // Reading the weights made all 2 MiB resident. Every page of every tensor is given back at the
  // end; what may stay is the header's page (parsed, never released): 4 KiB, against 2 MiB
  // without the release. 8 KiB allows for a header that straddles a page.
  const std::int64_t resident = resident_kb_of_mapping(file.bytes(file.at("layers.0.bias")).data());
  INFO("resident " << resident << " kB of a " << file.file_size() / 1024 << " kB file");
  REQUIRE(resident >= 0);
  CHECK(resident <= 8);
  CHECK(f32_at(m.layers[7].bias->value, 3) == value(3));  // copied, readable
}
