// What a warp collective computes once all its lanes have arrived: the semantics of the shuffles,
// votes and reductions (CUDA C++ Programming Guide, "Warp Shuffle Functions" and "Warp Vote
// Functions"), and of mma.m16n8k16 and ldmatrix with the fragment layouts of the PTX ISA. Pure
// functions of the lanes' registers; the runtime (runtime.cpp) does the waiting, the checking of
// who arrived, and the shared-memory reads ldmatrix needs.
#pragma once

#include <array>
#include <string>

#include "kernels/cuda/emu/runtime.hpp"

namespace sdgen::cuda::emu {

// A defect of one lane found while computing (a shuffle reading a lane outside the mask, ...).
struct LaneFault {
  int lane;
  std::string what;
};

// The participating lanes' registers, indexed by lane; null for lanes outside the mask.
using WarpLanes = std::array<LaneRegisters*, 32>;

// Fills every participating lane's outputs; throws LaneFault.
void complete_warp_op(WarpOp op, int variant, unsigned mask, const WarpLanes& lanes);

// "__shfl_xor_sync", "ldmatrix.x4.trans", ... for messages.
std::string warp_op_name(WarpOp op, int variant);

// Operations PTX marks .aligned: every lane must execute the same instruction (the same call
// site here), not merely the same kind of operation.
bool requires_same_site(WarpOp op);

}  // namespace sdgen::cuda::emu
