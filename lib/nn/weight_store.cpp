// Converting checkpoint tensors into backend weights, once (see weight_store.hpp).
#include "lib/nn/weight_store.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>

#include "lib/core/error.hpp"
#include "lib/core/half.hpp"

namespace sdgen::nn {

namespace {

// Every tensor the store places starts on a cache line, which the backends' vector loads like.
constexpr std::size_t kAlignment = 64;

std::size_t round_up(std::size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

std::byte* aligned_bytes(std::size_t bytes) {
  void* p = std::aligned_alloc(kAlignment, round_up(bytes));
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<std::byte*>(p);
}

// The stored tensor seen as [outer, inner, spatial] and written as [outer, spatial, inner]: a
// convolution's OIHW -> OHWI with spatial = kh * kw. Every other parameter is [1, numel, 1], for
// which the two orders coincide.
struct Relayout {
  std::int64_t outer = 1;
  std::int64_t inner = 1;
  std::int64_t spatial = 1;
};

struct Target {
  Shape shape;
  DType dtype = DType::F32;
  Relayout relayout;
  WeightUse prepare = WeightUse::Vector;  // offered to Backend::prepare_weight as this

  std::size_t nbytes() const { return static_cast<std::size_t>(shape.numel()) * dtype_size(dtype); }
};

Shape to_shape(const std::vector<std::int64_t>& dims) {
  Shape shape;
  for (auto d : dims) shape.push_back(d);
  return shape;
}

Target target_of(const Param& p, const WeightFormat& format) {
  const auto& s = p.shape;
  switch (p.use) {
    case ParamUse::Vector:
      return {.shape = to_shape(s), .dtype = format.vectors, .relayout = {.inner = p.numel()}, .prepare = WeightUse::Vector};
    case ParamUse::EmbeddingTable:
      return {.shape = to_shape(s), .dtype = format.tables, .relayout = {.inner = p.numel()}, .prepare = WeightUse::Table};
    case ParamUse::LinearWeight:
      // [out, in] or [out, in, 1, 1]: the same bytes either way.
      return {.shape = {s[0], s[1]},
              .dtype = format.matrices,
              .relayout = {.inner = p.numel()},
              .prepare = WeightUse::Linear};
    case ParamUse::Conv2dWeight:
      return {.shape = {s[0], s[2], s[3], s[1]},
              .dtype = format.matrices,
              .relayout = {.outer = s[0], .inner = s[1], .spatial = s[2] * s[3]},
              .prepare = WeightUse::Conv2d};
  }
  throw Error("weight store: unknown parameter use");
}

// ---- element conversion: a codec per dtype, one loop per (source, target) pair

struct F32Codec {
  using Raw = float;
  static float decode(float v) { return v; }
  static float encode(float v) { return v; }
};
struct F16Codec {
  using Raw = std::uint16_t;
  static float decode(std::uint16_t h) { return f16_to_f32(h); }
  static std::uint16_t encode(float v) { return f32_to_f16(v); }
};
struct BF16Codec {
  using Raw = std::uint16_t;
  static float decode(std::uint16_t h) { return bf16_to_f32(h); }
  static std::uint16_t encode(float v) { return f32_to_bf16(v); }
};

// Reads the source sequentially; memcpy because a tensor inside a safetensors file need not be
// aligned to its element size.
template <class From, class To>
void convert_typed(const std::byte* src, std::byte* dst, const Relayout& r) {
  using In = typename From::Raw;
  using Out = typename To::Raw;
  auto* out = reinterpret_cast<Out*>(dst);
  for (std::int64_t o = 0; o < r.outer; ++o)
    for (std::int64_t i = 0; i < r.inner; ++i)
      for (std::int64_t k = 0; k < r.spatial; ++k) {
        In raw;
        std::memcpy(&raw, src, sizeof raw);
        src += sizeof raw;
        out[(o * r.spatial + k) * r.inner + i] = To::encode(From::decode(raw));
      }
}

template <class From>
void convert_from(const std::byte* src, DType to, std::byte* dst, const Relayout& r) {
  switch (to) {
    case DType::F32: return convert_typed<From, F32Codec>(src, dst, r);
    case DType::F16: return convert_typed<From, F16Codec>(src, dst, r);
    case DType::BF16: return convert_typed<From, BF16Codec>(src, dst, r);
    default: throw Error(cat("weight store: cannot convert weights to ", dtype_name(to)));
  }
}

void convert(const NamedParam& np, const Target& t, std::byte* dst) {
  const weights::TensorSource& source = *np.param->source;
  const auto bytes = source.bytes();
  if (source.dtype() == t.dtype && t.relayout.spatial == 1) {
    std::memcpy(dst, bytes.data(), bytes.size());
    return;
  }
  switch (source.dtype()) {
    case DType::F32: return convert_from<F32Codec>(bytes.data(), t.dtype, dst, t.relayout);
    case DType::F16: return convert_from<F16Codec>(bytes.data(), t.dtype, dst, t.relayout);
    case DType::BF16: return convert_from<BF16Codec>(bytes.data(), t.dtype, dst, t.relayout);
    default:
      throw ModelError(cat("tensor '", np.name, "' is stored as ", dtype_name(source.dtype()),
                           "; weights must be F32, F16 or BF16"));
  }
}

// The stored bytes, when they already are the target tensor, for the backend to pack from; the
// mapping is read-only, and so is every use of a weight.
std::optional<Tensor> in_place(const weights::TensorSource& source, const Target& t) {
  const auto bytes = source.bytes();
  const bool aligned = reinterpret_cast<std::uintptr_t>(bytes.data()) % dtype_size(t.dtype) == 0;
  if (source.dtype() != t.dtype || t.relayout.spatial != 1 || !aligned) return std::nullopt;
  return Tensor::contiguous(const_cast<std::byte*>(bytes.data()), t.dtype, t.shape);
}

// Which pages of a source to give back: while loading, only those wholly inside it (a page it
// shares with the next tensor is still to be read); at the end, every page it touches.
enum class PageSpan { Inside, Touching };

// Gives back to the kernel the mapped pages of a source the store has consumed. Without this every
// page read at load stays resident, and counted in the process's RSS, for as long as the file is
// mapped: the whole checkpoint on top of its converted copy. The mapping is private and read-only,
// so a page touched again is simply read from the file again: this is a hint that cannot lose
// data, and its result is deliberately ignored.
void release_pages(std::span<const std::byte> bytes, PageSpan span) {
  static const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<std::uintptr_t>(bytes.data());
  const auto last = first + bytes.size();
  const std::uintptr_t begin = span == PageSpan::Inside ? (first + page - 1) / page * page : first / page * page;
  const std::uintptr_t end = span == PageSpan::Inside ? last / page * page : (last + page - 1) / page * page;
  if (end > begin) static_cast<void>(madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED));
}

const weights::TensorSource& bound_source(const NamedParam& np) {
  if (np.param->source == nullptr)
    throw Error(cat("weight store: parameter '", np.name, "' is not bound to a checkpoint tensor"));
  return *np.param->source;
}

// A host buffer that grows to the largest weight passed through it.
class Scratch {
 public:
  std::byte* get(std::size_t bytes) {
    if (bytes > capacity_) {
      data_.reset(aligned_bytes(bytes));
      capacity_ = bytes;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t capacity_ = 0;
};

}  // namespace

void WeightStore::Free::operator()(std::byte* p) const noexcept { std::free(p); }

WeightStore::WeightStore(Backend& backend, const WeightFormat& format, std::span<const NamedParam> params) {
  // Pass 1: what can be used in place or handed to the backend needs no room in the store.
  std::vector<std::pair<const NamedParam*, Target>> kept;
  Scratch scratch;
  for (const NamedParam& np : params) {
    const weights::TensorSource& source = bound_source(np);
    Target target = target_of(*np.param, format);
    const std::optional<Tensor> mapped = in_place(source, target);
    Tensor host = mapped.value_or(Tensor::contiguous(nullptr, target.dtype, target.shape));
    if (!mapped) {
      host.data = scratch.get(target.nbytes());
      convert(np, target, static_cast<std::byte*>(host.data));
    }
    const Tensor prepared = backend.prepare_weight(host, target.prepare);
    if (prepared.data != host.data) {
      np.param->value = prepared;  // the backend holds its own copy
      release_pages(source.bytes(), PageSpan::Inside);
    } else if (mapped && target.prepare == WeightUse::Table) {
      np.param->value = *mapped;
      mapped_bytes_ += target.nbytes();
    } else {
      kept.emplace_back(&np, std::move(target));
    }
  }

  // Pass 2: one allocation for the rest.
  for (const auto& [np, target] : kept) owned_bytes_ += round_up(target.nbytes());
  if (owned_bytes_ > 0) block_.reset(aligned_bytes(owned_bytes_));
  std::size_t offset = 0;
  for (const auto& [np, target] : kept) {
    std::byte* dst = block_.get() + offset;
    convert(*np, target, dst);
    np->param->value = Tensor::contiguous(dst, target.dtype, target.shape);
    offset += round_up(target.nbytes());
  }
  for (const NamedParam& np : params)
    if (np.param->value.data != bound_source(np).bytes().data()) release_pages(bound_source(np).bytes(), PageSpan::Touching);
}

void describe_weights(const WeightFormat& format, std::span<const NamedParam> params) {
  for (const NamedParam& np : params) {
    const Target target = target_of(*np.param, format);
    np.param->value = Tensor::contiguous(nullptr, target.dtype, target.shape);
  }
}

}  // namespace sdgen::nn
