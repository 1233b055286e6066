// ShapeBackend and CpuBackend reject every malformed call, with the same message, before touching
// any data; ShapeBackend accepts well-formed calls on tensors without memory.
//
// The table is the op set's contract in negative: each row breaks one rule of backend.hpp and
// names the words the message must contain (the op, the argument, the shapes involved).
#include <catch2/catch.hpp>

#include <functional>
#include <string>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/shape_backend.hpp"

using namespace sdgen;

namespace {

// Hands out distinct, zero-filled regions of one buffer, so that only the rows about aliasing
// make tensors overlap.
class Pool {
 public:
  Tensor make(const Shape& shape, DType dtype = DType::F32) {
    Tensor t = Tensor::contiguous(next(shape.numel()), dtype, shape);
    return t;
  }
  Tensor make_strided(const Shape& shape, const Strides& strides, std::int64_t span) {
    return Tensor{next(span), DType::F32, shape, strides, {}};
  }

 private:
  void* next(std::int64_t elements) {
    void* p = memory_.data() + used_;
    used_ += static_cast<std::size_t>(elements) * 2 + 16;  // room for 8-byte dtypes, and a gap
    REQUIRE(used_ <= memory_.size());
    return p;
  }
  std::vector<float> memory_ = std::vector<float>(1 << 20, 0.0f);
  std::size_t used_ = 0;
};

struct BadCall {
  const char* rule;
  std::function<void(Backend&)> call;
  const char* message;  // must appear in what()
};

Tensor on_cuda(Tensor t) {
  t.device = {DeviceKind::Cuda, 0};
  return t;
}

}  // namespace

TEST_CASE("malformed calls are rejected the same way by ShapeBackend and CpuBackend", "[ops][shape_backend]") {
  Pool p;
  // Well-formed pieces the rows below break one at a time.
  const Tensor x = p.make({2, 5, 6}), w = p.make({4, 6}), out = p.make({2, 5, 4});
  const Tensor img = p.make({1, 8, 8, 3}), cw = p.make({8, 3, 3, 3}), cout = p.make({1, 8, 8, 8});
  const Tensor gx = p.make({1, 2, 2, 12}), g12 = p.make({12}), g8 = p.make({8});
  const Tensor q = p.make({2, 7, 8}), kv = p.make({2, 9, 8}), kv2 = p.make({2, 9, 8}), qo = p.make({2, 7, 8});
  std::vector<std::int32_t> ids_mem(6, 0);
  const Tensor ids = Tensor::contiguous(ids_mem.data(), DType::I32, Shape{2, 3});
  const Tensor table = p.make({10, 4}), emb = p.make({2, 3, 4});
  Tensor packed = p.make({4, 6});
  packed.layout = Layout::Packed;

  const BadCall table_of_calls[] = {
      // ---- linear
      {"x's features differ from w's", [&](Backend& b) { b.linear(p.make({2, 5, 7}), w, out, {}); },
       "linear: x is [2, 5, 7] but w is [4, 6]; x's last dimension must be 6"},
      {"out has the wrong features", [&](Backend& b) { b.linear(x, w, p.make({2, 5, 3}), {}); },
       "linear: x is [2, 5, 6] and w is [4, 6] but out is [2, 5, 3]"},
      {"bias has the wrong length", [&](Backend& b) { b.linear(x, w, out, {.bias = &g8}); },
       "linear: w is [4, 6] but bias is [8]; expected [4]"},
      {"residual differs from out", [&](Backend& b) { const Tensor r = p.make({2, 4, 4}); b.linear(x, w, out, {.residual = &r}); },
       "linear: out is [2, 5, 4] but residual is [2, 4, 4]"},
      {"weight dtype not computed", [&](Backend& b) { b.linear(x, p.make({4, 6}, DType::F16), out, {}); },
       "linear: w is F16 [4, 6]; expected one of F32, BF16"},
      {"activation dtype", [&](Backend& b) { b.linear(p.make({2, 5, 6}, DType::BF16), w, out, {}); },
       "linear: x is BF16 [2, 5, 6]; expected F32"},
      {"rows that do not collapse",
       [&](Backend& b) { b.linear(p.make_strided({2, 5, 6}, {64, 8, 1}, 128), w, out, {}); },
       "linear: x is [2, 5, 6] with strides [64, 8, 1]; its leading dimensions must collapse to one row stride"},
      {"columns with a stride", [&](Backend& b) { b.linear(p.make_strided({2, 5, 6}, {60, 12, 2}, 120), w, out, {}); },
       "its last dimension must have stride 1"},
      {"out overlaps x", [&](Backend& b) { b.linear(x, p.make({6, 6}), Tensor{x.data, DType::F32, {2, 5, 6}, x.strides, {}}, {}); },
       "linear: out [2, 5, 6] overlaps x [2, 5, 6] (this op cannot run in place)"},
      {"a tensor on another device", [&](Backend& b) { b.linear(on_cuda(x), w, out, {}); },
       "linear: x is on a CUDA device but this backend runs on the CPU"},
      {"an empty dimension", [&](Backend& b) { b.linear(p.make({2, 0, 6}), w, p.make({2, 0, 4}), {}); },
       "linear: x is [2, 0, 6], which has an empty dimension"},
      // ---- conv2d
      {"conv input not an image", [&](Backend& b) { b.conv2d(p.make({8, 8, 3}), cw, cout, {.padding = 1}); },
       "conv2d: x is [8, 8, 3]; expected rank 4"},
      {"conv channels differ", [&](Backend& b) { b.conv2d(p.make({1, 8, 8, 4}), cw, cout, {.padding = 1}); },
       "conv2d: x is [1, 8, 8, 4] but w is [8, 3, 3, 3] (OHWI); w's last dimension must be 4"},
      {"conv output size for stride 2", [&](Backend& b) { b.conv2d(img, cw, cout, {.stride = 2, .padding = 1}); },
       "stride 2, padding 1 but out is [1, 8, 8, 8]; expected [1, 4, 4, 8]"},
      {"time embedding of the wrong shape",
       [&](Backend& b) { const Tensor a = p.make({1, 7}); b.conv2d(img, cw, cout, {.padding = 1, .add_per_channel = &a}); },
       "conv2d: out is [1, 8, 8, 8] but add_per_channel is [1, 7]; expected [1, 8]"},
      {"stride 0", [&](Backend& b) { b.conv2d(img, cw, cout, {.stride = 0}); }, "expected stride >= 1, padding >= 0"},
      {"kernel larger than the input",
       [&](Backend& b) { b.conv2d(p.make({1, 2, 2, 3}), cw, p.make({1, 1, 1, 8}), {}); },
       "conv2d: x is [1, 2, 2, 3] with padding 0, smaller than the kernel [8, 3, 3, 3]"},
      {"strided image", [&](Backend& b) { b.conv2d(p.make_strided({1, 8, 8, 3}, {256, 32, 4, 1}, 256), cw, cout, {.padding = 1}); },
       "expected a contiguous tensor"},
      // ---- norms
      {"groups that do not divide", [&](Backend& b) { b.group_norm(gx, g12, g12, p.make({1, 2, 2, 12}), {.groups = 5}); },
       "group_norm: x is [1, 2, 2, 12] but groups is 5; the channels must split evenly"},
      {"gamma of the wrong length", [&](Backend& b) { b.group_norm(gx, g8, g12, p.make({1, 2, 2, 12}), {.groups = 4}); },
       "group_norm: x is [1, 2, 2, 12] but gamma is [8]; expected [12]"},
      {"eps zero", [&](Backend& b) { b.group_norm(gx, g12, g12, p.make({1, 2, 2, 12}), {.groups = 4, .eps = 0.0f}); },
       "group_norm: eps 0 must be positive"},
      {"partial in-place overlap",
       [&](Backend& b) {
         b.group_norm(gx, g12, g12, Tensor{static_cast<float*>(gx.data) + 1, DType::F32, gx.shape, gx.strides, {}}, {.groups = 4});
       },
       "group_norm: out [1, 2, 2, 12] overlaps x [1, 2, 2, 12] without being the same view"},
      {"layer norm beta", [&](Backend& b) { b.layer_norm(x, p.make({6}), p.make({5}), p.make({2, 5, 6}), {}); },
       "layer_norm: x is [2, 5, 6] but beta is [5]; expected [6]"},
      // ---- attention
      {"heads do not divide the channels", [&](Backend& b) { b.attention(q, kv, kv2, qo, {.heads = 3}); },
       "attention: q is [2, 7, 8] but heads is 3; the channels must split evenly"},
      {"k and v differ", [&](Backend& b) { b.attention(q, kv, p.make({2, 8, 8}), qo, {.heads = 2}); },
       "attention: k is [2, 9, 8] but v is [2, 8, 8]; expected equal shapes"},
      {"k of another batch", [&](Backend& b) { b.attention(q, p.make({1, 9, 8}), p.make({1, 9, 8}), qo, {.heads = 2}); },
       "attention: q is [2, 7, 8] but k is [1, 9, 8]; expected [2, Nk, 8]"},
      {"no heads", [&](Backend& b) { b.attention(q, kv, kv2, qo, {.heads = 0}); }, "attention: heads is 0; expected at least 1"},
      {"out is q", [&](Backend& b) { b.attention(q, kv, kv2, q, {.heads = 2}); },
       "attention: out [2, 7, 8] overlaps q [2, 7, 8] (this op cannot run in place)"},
      {"negative scale", [&](Backend& b) { b.attention(q, kv, kv2, qo, {.heads = 2, .scale = -1.0f}); },
       "attention: scale -1 must be positive"},
      // ---- elementwise
      {"geglu of an odd width", [&](Backend& b) { b.geglu(p.make({2, 5}), p.make({2, 2})); },
       "geglu: x is [2, 5]; its last dimension must be even"},
      {"geglu output width", [&](Backend& b) { b.geglu(p.make({2, 6}), p.make({2, 2})); },
       "geglu: x is [2, 6] but out is [2, 2]; expected x's leading dimensions then 3"},
      {"activation shapes", [&](Backend& b) { b.activation(x, p.make({2, 6, 5}), Act::Silu); },
       "activation: x is [2, 5, 6] but out is [2, 6, 5]"},
      {"add with a b that is not a suffix", [&](Backend& b) { const Tensor bb = p.make({5}); b.add(x, &bb, p.make({2, 5, 6}), {}); },
       "add: a is [2, 5, 6] but b is [5]; b's shape must equal a trailing part of a's"},
      {"upsample output", [&](Backend& b) { b.upsample_nearest(p.make({1, 2, 3, 3}), p.make({1, 4, 5, 4})); },
       "upsample_nearest: x is [1, 2, 3, 3] but out is [1, 4, 5, 4]; out must have x's batch and channels and a "
       "positive height and width"},
      {"concat of different sizes", [&](Backend& b) { b.concat_channels(p.make({1, 2, 2, 3}), p.make({1, 2, 3, 3}), p.make({1, 2, 2, 6})); },
       "concat_channels: a is [1, 2, 2, 3] but b is [1, 2, 3, 3]; all but the last dimension must agree"},
      {"timesteps of rank 2", [&](Backend& b) { b.timestep_embedding(p.make({2, 1}), p.make({2, 8}), {}); },
       "timestep_embedding: t is [2, 1]; expected rank 1"},
      {"a one-column embedding", [&](Backend& b) { b.timestep_embedding(p.make({2}), p.make({2, 1}), {}); },
       "the embedding needs at least 2 columns"},
      {"float ids", [&](Backend& b) { b.embedding(p.make({2, 3}), table, emb); }, "embedding: ids is F32 [2, 3]; expected I32"},
      {"embedding output", [&](Backend& b) { b.embedding(ids, table, p.make({2, 3, 5})); },
       "embedding: ids is [2, 3] and table is [10, 4] but out is [2, 3, 5]; expected [2, 3, 4]"},
      // ---- weights
      {"conv weight of rank 3", [&](Backend& b) { b.prepare_weight(p.make({8, 3, 3}), WeightUse::Conv2d); },
       "prepare_weight: w is [8, 3, 3]; expected rank 4"},
      {"integer weight", [&](Backend& b) { b.prepare_weight(p.make({4, 6}, DType::I32), WeightUse::Linear); },
       "prepare_weight: w is I32 [4, 6]; expected a floating-point weight"},
      {"packed tensor where an activation goes", [&](Backend& b) { b.layer_norm(x, packed, g12, p.make({2, 5, 6}), {}); },
       "layer_norm: gamma [4, 6] is a packed weight; only linear and conv2d take those"},
  };

  ShapeBackend shape(CpuBackend::op_support());
  CpuBackend cpu;
  for (const BadCall& row : table_of_calls) {
    INFO("rule: " << row.rule);
    std::string shape_message, cpu_message;
    try {
      row.call(shape);
    } catch (const Error& e) {
      shape_message = e.what();
    }
    try {
      row.call(cpu);
    } catch (const Error& e) {
      cpu_message = e.what();
    }
    CHECK_THAT(shape_message, Catch::Contains(row.message));
    CHECK(cpu_message == shape_message);
  }
}

TEST_CASE("ShapeBackend accepts well-formed calls on tensors without memory", "[ops][shape_backend]") {
  // A ResNet block and a transformer's attention at 512x512, as the planning pass would run them.
  auto t = [](const Shape& s) { return Tensor::contiguous(nullptr, DType::F32, s); };
  ShapeBackend b(CpuBackend::op_support());
  const Tensor x = t({2, 64, 64, 320}), h = t({2, 64, 64, 320}), temb = t({2, 320}), g = t({320});
  Tensor w3 = t({320, 3, 3, 320});
  w3 = b.prepare_weight(w3, WeightUse::Conv2d);
  CHECK(w3.shape == Shape{320, 3, 3, 320});
  b.group_norm(x, g, g, h, {.groups = 32, .silu = true});
  b.conv2d(h, w3, t({2, 64, 64, 320}), {.padding = 1, .bias = &g, .add_per_channel = &temb, .residual = &x});
  const Tensor tokens = t({2, 4096, 320}), qkv = t({2, 4096, 960}), ctx_out = t({2, 4096, 320});
  const Tensor q{nullptr, DType::F32, {2, 4096, 320}, {4096 * 960, 960, 1}, {}};
  b.linear(tokens, t({960, 320}), qkv, {});
  b.attention(q, q, q, ctx_out, {.heads = 8});
  b.timestep_embedding(t({2}), t({2, 320}), {});
  SUCCEED("every call passed its checks");
}
