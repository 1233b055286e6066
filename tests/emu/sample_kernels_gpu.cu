// The sample-kernel tests of sample_kernels_test.cpp, compiled by nvcc: on a machine with a GPU
// they run the same kernels on the device (an emulator disagreeing with the GPU is a bug in the
// emulator), and everywhere they prove that the kernel sources, the broken ones included, build
// for sm_80 and sm_90 without warnings.
#include "tests/emu/broken_kernels.cuh"
#include "tests/emu/sample_kernels_test.cpp"
