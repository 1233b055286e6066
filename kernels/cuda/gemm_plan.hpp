// The GEMM layer of the CUDA backend, decided on the host: which cuBLASLt calls a linear or a
// conv2d becomes, with which epilogue, where the residual goes, and which small kernels run around
// them. Plain C++ (no CUDA header), so that every decision is tested on the CPU in CI
// (tests/cuda_kernels/gemm_plan_test.cpp, and gemm_emulated_test.cpp, which runs whole plans with the
// real kernels in emulation and a host GEMM in cuBLASLt's place); kernels/cuda/gemm.cu only turns a
// GemmCall into cublasLtMatmul.
//
// cuBLASLt computes, column-major, D = epilogue(alpha * op(A) op(B) + beta * C + bias) in fp32
// (CUBLAS_COMPUTE_32F, fp32 scales) and rounds once to D's type; the bias has D's length of rows and
// is added BEFORE the epilogue's activation, and so is C. A row-major out[m, n] = a[m, k] w[n, k]^T
// is the column-major out^T = w^T a^T: A = w with op T (k x n, ld k), B = a (k x m, ld = a's row
// stride), C and D n x m with their row strides as ld, and the bias (n) is then per output feature.
// GemmCall states all of it in row-major terms.
//
// linear: out = act(x w^T + bias) + residual.
//  * cuBLASLt's GELU epilogue is the tanh approximation, so only Act::GeluTanh fuses into the GEMM;
//    erf-GELU, SiLU and quick-GELU run as a pass over the output afterwards.
//  * The residual is C with beta = 1 only when there is no activation: C is added before the
//    epilogue's activation, and the op adds the residual after it. With an activation the same pass
//    applies the activation and adds the residual (one read-modify-write of out, not two).
// conv2d: out = (conv(x, w) + bias + add_per_channel[b] + residual) * s.
//  * The convolution is a GEMM over output pixels. Row p of the im2col matrix is the KH x KW x Cin
//    patch of x under output pixel p (zeros where it overhangs the padding), in the weight's OHWI
//    order, so the OHWI weight is already the [Cout, KH*KW*Cin] matrix. A 1x1 conv with stride 1
//    and no padding (the ResNet shortcuts, the transformers' proj_in/proj_out) needs no im2col: x is
//    the matrix.
//  * The scale distributes: alpha = beta = s, and the bias becomes s * (bias + add[b]), computed
//    into scratch by a tiny kernel (in the storage format: cuBLASLt's bias has D's type) once per image; with a
//    per-channel add, each image is therefore its own GEMM(s). With s = 1 and no add, the given bias
//    is used as it is.
//  * im2col is bounded by the scratch the caller gives: the output rows of a GEMM are split into
//    balanced chunks (multiples of 256 rows when there are several) whose im2col rows fit. The
//    backend gives what conv2d_gemm_scratch_bytes asks, the whole im2col up to 64 MiB; a 512x512x128
//    3x3 conv would need 262144 x 1152 halves = 604 MB in one go, and runs as 10 GEMMs of 26,368
//    rows (M that large keeps all 132 SMs busy; only the im2col write is extra). In SD only the
//    conv_ins (Cin = 4) come here: the implicit-GEMM kernel takes every other convolution.
//    The im2col matrix's row stride is KH*KW*Cin rounded up to 8 halves, so that its rows start on
//    16-byte boundaries (conv_in's 3x3x4 = 36 columns) and cuBLASLt may use its vectorized kernels.
//
// Algorithm choice: cuBLASLt's heuristic depends on the sizes, the strides, the epilogue, whether C
// is read, and the alignment of every pointer (it keeps only algorithms whose alignment needs the
// preference allows). GemmKey holds exactly these, and LtGemm asks the heuristic once per key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "kernels/backend.hpp"
#include "kernels/op_checks.hpp"

namespace sdgen::cuda {

// ---- one cuBLASLt call

// What cuBLASLt applies after the product (CUBLASLT_EPILOGUE_DEFAULT, _BIAS, _GELU, _GELU_BIAS).
enum class GemmEpilogue { Default, Bias, GeluTanh, GeluTanhBias };

// What the product's C operand is.
enum class GemmC { Unused, Residual };

// Alignment in bytes of each operand: the largest power of two, at most 256 (cuBLASLt's default
// requirement), dividing the address and, for matrices, the row stride in bytes.
struct GemmAlignment {
  std::uint32_t a = 256, w = 256, c = 256, out = 256, bias = 256;
  friend bool operator==(const GemmAlignment&, const GemmAlignment&) = default;
};

// Everything cuBLASLt's choice of algorithm depends on. Strides in elements. When C is unused,
// c_row_stride and alignment.c are out's (cuBLASLt is then given D as C with beta 0).
struct GemmKey {
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t a_row_stride = 0, c_row_stride = 0, out_row_stride = 0;
  GemmEpilogue epilogue = GemmEpilogue::Default;
  GemmC c = GemmC::Unused;
  GemmAlignment alignment;
  friend bool operator==(const GemmKey&, const GemmKey&) = default;
};

struct GemmKeyHash {
  std::size_t operator()(const GemmKey& key) const;
};

// One cublasLtMatmul, row-major, 16-bit operands (fp16 or bf16), fp32 accumulation and scales:
//   out[i, j] = epilogue(alpha * sum_k a[i, k] w[j, k] + beta * c[i, j] + bias[j])
// a, c and out are rows with key's strides; w is [n, k] contiguous; bias [n] contiguous.
struct GemmCall {
  GemmKey key;
  float alpha = 1.0f;
  float beta = 0.0f;           // 0 when C is unused
  const void* a = nullptr;
  const void* w = nullptr;
  const void* c = nullptr;     // the residual, or null when key.c is Unused
  const void* bias = nullptr;  // null unless the epilogue has a bias
  void* out = nullptr;
};

// ---- linear

// A linear on 16-bit device memory: out = act(x w^T + bias) + residual (backend.hpp's LinearArgs).
// geometry comes from check_linear; bias and residual are optional (null).
struct GemmLinear {
  LinearGeometry geometry;
  const void* x = nullptr;
  const void* w = nullptr;  // [n, k] contiguous
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* out = nullptr;
  Act act = Act::None;
};

// The pass after a GEMM: out[r, :] = act(out[r, :]) + residual[r, :] (residual optional).
struct RowsPass {
  Act act = Act::None;
  void* out = nullptr;
  const void* residual = nullptr;
  std::int64_t rows = 0, cols = 0;
  std::int64_t out_row_stride = 0, residual_row_stride = 0;
};

struct LinearPlan {
  GemmCall gemm;
  std::optional<RowsPass> pass;  // when the activation or the residual cannot be fused
};

// Validates `op` (throws sdgen::BackendError naming the op and the shapes) and plans it.
LinearPlan plan_linear(const GemmLinear& op);

// ---- conv2d

// A conv2d on 16-bit NHWC device memory (backend.hpp's Conv2dArgs); geometry comes from
// check_conv2d; bias [Cout], add_per_channel [B, Cout] and residual (out's shape) are optional.
struct GemmConv2d {
  Conv2dGeometry geometry;
  const void* x = nullptr;
  const void* w = nullptr;  // [Cout, KH, KW, Cin] contiguous
  const void* bias = nullptr;
  const void* add_per_channel = nullptr;
  const void* residual = nullptr;
  void* out = nullptr;
  float output_scale = 1.0f;
};

// Device memory a conv2d may use whole for its im2col rows and scaled bias.
struct GemmScratch {
  void* data = nullptr;
  std::size_t bytes = 0;
};

// What a conv2d of this geometry asks for: its scaled bias (counted whether or not it has one:
// 256 bytes or so) and the im2col rows of the whole batch, or of 64 MiB's worth when that is less
// (then it runs in chunks), but never less than one row.
std::size_t conv2d_gemm_scratch_bytes(const Conv2dGeometry& g);

// Where the GEMM's a operand comes from: x itself (1x1, stride 1, no padding), or im2col rows.
enum class ConvMatrix { Input, Im2col };

// Which bias the epilogue adds: none, the op's bias as it is, or s * (bias + add[b]) from scratch.
enum class ConvBias { None, Given, Scaled };

// bias_out[c] = T(scale * (bias[c] + add[c])), either term optional (null).
struct ConvBiasStep {
  const void* bias = nullptr;
  const void* add = nullptr;  // the image's row of add_per_channel
  void* bias_out = nullptr;
  std::int64_t channels = 0;
  float scale = 1.0f;
};

// col[r, :KH*KW*Cin] = the patch of x under output pixel row0 + r (pixels counted over B*Ho*Wo),
// for r in [0, rows); columns past KH*KW*Cin up to col_row_stride are not written.
struct Im2colStep {
  const void* x = nullptr;
  void* col = nullptr;
  std::int64_t row0 = 0, rows = 0;
  std::int64_t col_row_stride = 0;
};

// One GEMM of a conv2d and what must run before it.
struct ConvStep {
  std::optional<ConvBiasStep> bias;  // at the first chunk of each image (or of the batch)
  std::optional<Im2colStep> im2col;
  GemmCall gemm;
};

class ConvPlan {
 public:
  // Validates `op` and that `scratch` can hold what the plan needs (throws sdgen::BackendError
  // naming the op and the shapes), and plans it. Keeps copies of op and scratch.
  ConvPlan(const GemmConv2d& op, const GemmScratch& scratch);

  const Conv2dGeometry& geometry() const { return op_.geometry; }
  ConvMatrix matrix() const { return matrix_; }
  ConvBias bias() const { return bias_; }
  // Output rows are split into segments (images when each has its own bias, else the batch),
  // and each segment into chunks of chunk_rows (the last one shorter); one GEMM per chunk.
  std::int64_t segments() const { return segments_; }
  std::int64_t segment_rows() const { return segment_rows_; }
  std::int64_t chunk_rows() const { return chunk_rows_; }
  std::int64_t steps() const { return segments_ * chunks_per_segment_; }
  // Halves between im2col rows (0 without im2col), and the scratch bytes the plan uses.
  std::int64_t im2col_row_stride() const { return im2col_row_stride_; }
  std::size_t scratch_used() const;

  // The i-th GEMM, i in [0, steps()), in order: they must run in this order on one stream (the
  // scratch is reused from one to the next).
  ConvStep step(std::int64_t i) const;

 private:
  GemmConv2d op_;
  GemmScratch scratch_;
  ConvMatrix matrix_ = ConvMatrix::Input;
  ConvBias bias_ = ConvBias::None;
  std::int64_t segments_ = 1, segment_rows_ = 0, chunk_rows_ = 0, chunks_per_segment_ = 1;
  std::int64_t k_ = 0;                  // KH*KW*Cin
  std::int64_t im2col_row_stride_ = 0;  // halves
  std::size_t bias_bytes_ = 0;          // the scaled bias at the start of scratch (256-byte padded)
};

}  // namespace sdgen::cuda
