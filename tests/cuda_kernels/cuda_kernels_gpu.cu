// The kernel tests of this folder compiled by nvcc: on a GPU they run the real kernels against the
// reference backend; everywhere they prove every kernel builds for sm_80 and sm_90 without warnings.
// One #include per kernel family, as in CMakeLists.txt.
#include "tests/cuda_kernels/attention_test.cpp"
#include "tests/cuda_kernels/conv2d_test.cpp"
#include "tests/cuda_kernels/gemm_steps_test.cpp"
#include "tests/cuda_kernels/im2col_test.cpp"
#include "tests/cuda_kernels/layout_test.cpp"
#include "tests/cuda_kernels/norms_test.cpp"
#include "tests/cuda_kernels/elementwise_test.cpp"
#include "tests/cuda_kernels/step_update_test.cpp"
