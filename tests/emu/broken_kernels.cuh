// Kernels with one deliberate defect each, the kinds that pass unnoticed on a GPU until they
// corrupt something: the emulator must stop every one of them and say where (broken_kernels_test.cpp).
// Each is the smallest kernel that shows its defect; the comment on the defective line says what
// is wrong. They compile with nvcc too (sample_kernels_gpu.cu builds them), so the defects are in
// code the GPU compiler accepts, not in emulator-only constructs.
#pragma once

#include "kernels/cuda/device_api.cuh"

namespace sdgen::test {

using cuda::GlobalPtr;

// out[i + 1] = x[i]: the last thread stores one element past the end of `out`.
__global__ void shift_right_kernel(GlobalPtr<const float> x, GlobalPtr<float> out, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i + 1] = x[i];  // defect: should be i + 1 < n
}

// Sum of each element and its right neighbour, through a 32-element shared tile (one warp).
__global__ void neighbour_sum_kernel(GlobalPtr<const float> x, GlobalPtr<float> out) {
  SDGEN_SHARED(float, tile, 32);
  const int t = int(threadIdx.x);
  tile[t] = x[t];
  __syncthreads();
  out[t] = tile[t] + tile[t + 1];  // defect: thread 31 reads tile[32]
}

// Each thread reads the element its left neighbour stored.
__global__ void left_neighbour_kernel(GlobalPtr<const float> x, GlobalPtr<float> out) {
  SDGEN_SHARED(float, tile, 64);
  const int t = int(threadIdx.x);
  tile[t] = x[t];
  // defect: no __syncthreads() between the stores and the loads of other threads' elements
  out[t] = tile[t > 0 ? t - 1 : 0];
}

// Each thread reads the element its right neighbour stores.
__global__ void right_neighbour_kernel(GlobalPtr<const float> x, GlobalPtr<float> out) {
  SDGEN_SHARED(float, tile, 64);
  const int t = int(threadIdx.x);
  tile[t] = x[t];
  // defect: no __syncthreads() between the stores and the loads of other threads' elements
  out[t] = tile[(t + 1) % 64];
}

// block_sum_kernel (sample_kernels.cuh) without the barrier inside its loop: a thread adds in an
// element that another thread may not have finished updating.
__global__ void block_sum_no_loop_barrier_kernel(GlobalPtr<const float> x, GlobalPtr<float> partial) {
  SDGEN_SHARED(float, buf, 64);
  const int t = int(threadIdx.x);
  buf[t] = x[t];
  __syncthreads();
  for (int stride = 32; stride > 0; stride /= 2) {
    if (t < stride) buf[t] += buf[t + stride];
    // defect: the __syncthreads() that ends each step is missing
  }
  if (t == 0) partial[0] = buf[0];
}

__global__ void divergent_barrier_kernel(GlobalPtr<float> out) {
  const int t = int(threadIdx.x);
  if (t < 16) __syncthreads();  // defect: threads 16 and up never reach this barrier
  out[t] = float(t);
}

__global__ void two_barriers_kernel(GlobalPtr<float> out) {
  const int t = int(threadIdx.x);
  if (t % 2 == 0) {
    out[t] = 1.0f;
    __syncthreads();  // defect: even and odd threads wait at different barriers
  } else {
    out[t] = 2.0f;
    __syncthreads();
  }
}

__global__ void divergent_shuffle_kernel(GlobalPtr<int> out) {
  const int lane = int(threadIdx.x % 32);
  int v = lane;
  if (lane < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);  // defect: the mask names lanes 16-31, which skip it
  out[threadIdx.x] = v;
}

__global__ void mismatched_mask_kernel(GlobalPtr<int> out) {
  const int lane = int(threadIdx.x % 32);
  const unsigned mask = lane < 16 ? 0xffffffffu : 0xffff0000u;  // defect: the lanes disagree on the mask
  out[threadIdx.x] = __shfl_xor_sync(mask, lane, 1);
}

// Lanes 0-3 rotate a value among themselves.
__global__ void partial_mask_shuffle_kernel(GlobalPtr<int> out) {
  const int lane = int(threadIdx.x % 32);
  if (lane < 4) out[lane] = __shfl_sync(0xfu, lane, lane + 7);  // defect: should be (lane + 1) % 4
}

// Half the warp shuffles while the other half waits at a block barrier.
__global__ void shuffle_against_barrier_kernel(GlobalPtr<int> out) {
  const int lane = int(threadIdx.x % 32);
  int v = lane;
  if (lane < 16) {
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  } else {
    __syncthreads();  // defect: lanes 16-31 wait here, lanes 0-15 in the shuffle that needs them
  }
  out[lane] = v;
}

// Lanes exchange values through shared memory, relying on the warp executing in lockstep.
__global__ void warp_exchange_without_syncwarp_kernel(GlobalPtr<const int> x, GlobalPtr<int> out) {
  SDGEN_SHARED(int, slots, 32);
  const int lane = int(threadIdx.x);
  slots[lane] = x[lane];
  // defect: no __syncwarp(); since Volta the lanes of a warp need not run in lockstep
  out[lane] = slots[lane > 0 ? lane - 1 : 0];
}

// One warp stages 128 floats with cp.async and reads its neighbours' part.
__global__ void copy_without_wait_kernel(GlobalPtr<const float> x, GlobalPtr<float> out) {
  SDGEN_SHARED(float, tile, 128);
  const int lane = int(threadIdx.x);
  cuda::cp_async_16(tile + 4 * lane, x + 4 * lane);
  cuda::cp_async_commit();
  // defect: no cp_async_wait<0>() before the barrier, so the copies may not have landed
  __syncthreads();
  out[lane] = tile[(4 * lane + 4) % 128];
}

// cp.async moves 16 bytes to a 16-byte aligned shared address.
__global__ void misaligned_copy_kernel(GlobalPtr<const float> x, GlobalPtr<float> out) {
  SDGEN_SHARED(float, tile, 32);
  const int lane = int(threadIdx.x);
  if (lane < 4) cuda::cp_async_16(tile + 2 + 4 * lane, x + 4 * lane);  // defect: tile + 2 is 8 bytes off
  cuda::cp_async_commit();
  cuda::cp_async_wait<0>();
  __syncthreads();
  out[lane] = tile[lane];
}

}  // namespace sdgen::test
