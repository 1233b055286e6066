// Every defect in broken_kernels.cuh must stop the emulated launch with a KernelFault that names
// the kernel, the block, the guilty thread and what it did. Emulation only: on a GPU these kernels
// would "work" or corrupt memory, which is the point of catching them here.
//
// The launches are one or two blocks of at most 64 threads: a defect shows in the first block
// that has it, so more threads would only make the run longer.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "tests/emu/broken_kernels.cuh"
#include "tests/emu/device_buffer.hpp"

using namespace sdgen;
using namespace sdgen::test;
using Catch::Matchers::Contains;

namespace {

// The message of the KernelFault `launch` throws; fails the test when it throws none.
template <class Launch>
std::string fault_of(Launch&& launch) {
  try {
    launch();
  } catch (const cuda::emu::KernelFault& e) {
    return e.what();
  }
  FAIL("the launch raised no KernelFault");
  return {};
}

std::vector<float> iota_floats(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = float(i);
  return v;
}

}  // namespace

TEST_CASE("an off-by-one global store is reported with the buffer, index and thread", "[emu][broken]") {
  constexpr int n = 64;
  DeviceBuffer<float> x(iota_floats(n)), out(n);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(shift_right_kernel), {.grid = 2, .block = 32}, x.view("x"), out.view("out"), n);
  });
  // Thread 31 of block 1 is i = 63, which stores out[64].
  CHECK_THAT(message, Contains("kernel 'shift_right_kernel', block (1,0,0), thread (31,0,0)"));
  CHECK_THAT(message, Contains("global memory access out of bounds: out[64] but out has 64 elements"));
}

TEST_CASE("an off-by-one shared read is reported", "[emu][broken]") {
  DeviceBuffer<float> x(iota_floats(32)), out(32);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(neighbour_sum_kernel), {.grid = 1, .block = 32}, x.view("x"), out.view("out"));
  });
  CHECK_THAT(message, Contains("block (0,0,0), thread (31,0,0)"));
  CHECK_THAT(message, Contains("shared memory access out of bounds: tile[32] but tile has 32 elements"));
}

TEST_CASE("a missing __syncthreads() before reading shared memory is a race", "[emu][broken]") {
  DeviceBuffer<float> x(iota_floats(64)), out(64);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(left_neighbour_kernel), {.grid = 1, .block = 64}, x.view("x"), out.view("out"));
  });
  CHECK_THAT(message, Contains("kernel 'left_neighbour_kernel', block (0,0,0), thread (1,0,0)"));
  CHECK_THAT(message, Contains("shared-memory race on tile[0]: thread (0,0,0) wrote it and thread (1,0,0) reads it "
                               "with no __syncthreads() or __syncwarp() between"));
}

TEST_CASE("a missing __syncthreads() that reads an element not yet stored is reported", "[emu][broken]") {
  DeviceBuffer<float> x(iota_floats(64)), out(64);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(right_neighbour_kernel), {.grid = 1, .block = 64}, x.view("x"), out.view("out"));
  });
  CHECK_THAT(message, Contains("thread (0,0,0): reads tile[1] in shared memory, which no thread of this block has "
                               "written yet"));
}

TEST_CASE("a reduction missing the barrier inside its loop is a race", "[emu][broken]") {
  DeviceBuffer<float> x(iota_floats(64)), partial(1);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(block_sum_no_loop_barrier_kernel), {.grid = 1, .block = 64}, x.view("x"),
                 partial.view("partial"));
  });
  // Thread 0 runs its whole loop first and reads buf[1] in the last step; thread 1 then updates it.
  CHECK_THAT(message, Contains("shared-memory race on buf[1]: thread (0,0,0) read it and thread (1,0,0) writes it"));
}

TEST_CASE("a __syncthreads() inside a divergent branch is reported", "[emu][broken]") {
  DeviceBuffer<float> out(32);
  const std::string message = fault_of(
      [&] { cuda::launch(SDGEN_KERNEL(divergent_barrier_kernel), {.grid = 1, .block = 32}, out.view("out")); });
  CHECK_THAT(message, Contains("thread (16,0,0): has exited, but threads (0,0,0)..(15,0,0) wait at __syncthreads() at "
                               "broken_kernels.cuh:"));
}

TEST_CASE("threads waiting at two different __syncthreads() are reported", "[emu][broken]") {
  DeviceBuffer<float> out(32);
  const std::string message =
      fault_of([&] { cuda::launch(SDGEN_KERNEL(two_barriers_kernel), {.grid = 1, .block = 32}, out.view("out")); });
  CHECK_THAT(message, Contains("thread (1,0,0): waits at __syncthreads() at broken_kernels.cuh:"));
  CHECK_THAT(message, Contains("but threads (0,0,0), (2,0,0), (4,0,0), (6,0,0), ... wait at __syncthreads() at"));
  CHECK_THAT(message, Contains("all threads of a block must meet at the same __syncthreads()"));
}

TEST_CASE("a shuffle whose mask names lanes that skip it is reported", "[emu][broken]") {
  DeviceBuffer<int> out(32);
  const std::string message = fault_of(
      [&] { cuda::launch(SDGEN_KERNEL(divergent_shuffle_kernel), {.grid = 1, .block = 32}, out.view("out")); });
  CHECK_THAT(message,
             Contains("thread (16,0,0): has exited, but lanes 0x0000ffff of its warp wait in __shfl_xor_sync"));
  CHECK_THAT(message, Contains("with mask 0xffffffff"));
}

TEST_CASE("lanes passing different masks to one shuffle are reported", "[emu][broken]") {
  DeviceBuffer<int> out(32);
  const std::string message =
      fault_of([&] { cuda::launch(SDGEN_KERNEL(mismatched_mask_kernel), {.grid = 1, .block = 32}, out.view("out")); });
  CHECK_THAT(message, Contains("thread (16,0,0): __shfl_xor_sync at broken_kernels.cuh:"));
  CHECK_THAT(message, Contains("with mask 0xffff0000, while lanes 0x0000ffff wait in __shfl_xor_sync"));
  CHECK_THAT(message, Contains("must all pass the same mask"));
}

TEST_CASE("a shuffle reading a lane outside its mask is reported", "[emu][broken]") {
  DeviceBuffer<int> out(32);
  const std::string message = fault_of(
      [&] { cuda::launch(SDGEN_KERNEL(partial_mask_shuffle_kernel), {.grid = 1, .block = 32}, out.view("out")); });
  CHECK_THAT(message, Contains("thread (0,0,0): __shfl_sync reads lane 7, which is not in the mask 0x0000000f"));
}

TEST_CASE("a shuffle whose lanes are held at a __syncthreads() is a deadlock", "[emu][broken]") {
  DeviceBuffer<int> out(32);
  const std::string message = fault_of(
      [&] { cuda::launch(SDGEN_KERNEL(shuffle_against_barrier_kernel), {.grid = 1, .block = 32}, out.view("out")); });
  CHECK_THAT(message, Contains("thread (16,0,0): waits at __syncthreads() at broken_kernels.cuh:"));
  CHECK_THAT(message, Contains("but lanes 0x0000ffff of its warp wait in __shfl_xor_sync"));
  CHECK_THAT(message, Contains("the block can never continue"));
}

TEST_CASE("a warp exchanging data through shared memory without __syncwarp() is a race", "[emu][broken]") {
  DeviceBuffer<int> x(std::vector<int>(32, 7)), out(32);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(warp_exchange_without_syncwarp_kernel), {.grid = 1, .block = 32}, x.view("x"),
                 out.view("out"));
  });
  CHECK_THAT(message, Contains("shared-memory race on slots[0]: thread (0,0,0) wrote it and thread (1,0,0) reads it"));
}

TEST_CASE("reading shared memory before a cp.async has been waited for is reported", "[emu][broken]") {
  DeviceBuffer<float> x(iota_floats(128)), out(32);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(copy_without_wait_kernel), {.grid = 1, .block = 32}, x.view("x"), out.view("out"));
  });
  CHECK_THAT(message, Contains("thread (0,0,0): reads tile[4] in shared memory while the cp.async that thread (1,0,0) "
                               "issued into it is still in flight"));
}

TEST_CASE("a misaligned cp.async is reported", "[emu][broken]") {
  DeviceBuffer<float> x(iota_floats(16)), out(32);
  const std::string message = fault_of([&] {
    cuda::launch(SDGEN_KERNEL(misaligned_copy_kernel), {.grid = 1, .block = 32}, x.view("x"), out.view("out"));
  });
  CHECK_THAT(message, Contains("thread (0,0,0): misaligned access: &tile[2] is not 16-byte aligned"));
}

TEST_CASE("a launch configuration the GPU would refuse is refused", "[emu]") {
  DeviceBuffer<float> out(32);
  CHECK_THROWS_WITH(
      cuda::launch(SDGEN_KERNEL(divergent_barrier_kernel), {.grid = 1, .block = 2048}, out.view("out")),
      Contains("launching kernel divergent_barrier_kernel failed: a block of 2048x1x1 threads exceeds the limits"));
  CHECK_THROWS_WITH(cuda::launch(SDGEN_KERNEL(divergent_barrier_kernel),
                                 {.grid = 1, .block = 32, .shared_bytes = 200 * 1024}, out.view("out")),
                    Contains("204800 bytes of dynamic shared memory exceed the 166912 an sm_80 block can have"));
}
