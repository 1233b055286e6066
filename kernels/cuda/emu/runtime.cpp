// The emulator's scheduler: blocks in order, the threads of a block as fibers, barriers and warp
// collectives as meeting points, and the reports that name kernel, block and thread. The model is
// described in runtime.hpp; shared-memory bookkeeping is in shared_memory.cpp and the semantics of
// the warp operations in warp_ops.cpp.
#include "kernels/cuda/emu/runtime.hpp"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <deque>
#include <exception>
#include <utility>
#include <vector>

#include "kernels/cuda/emu/emulated_cuda.hpp"
#include "kernels/cuda/emu/shared_memory.hpp"
#include "kernels/cuda/emu/warp_ops.hpp"

// AddressSanitizer builds (GCC says so with __SANITIZE_ADDRESS__, clang with __has_feature).
#if defined(__SANITIZE_ADDRESS__)
#define SDGEN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SDGEN_EMU_ASAN 1
#endif
#endif
#ifdef SDGEN_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace sdgen::cuda::emu {
namespace {

// ---- telling AddressSanitizer about the fibers
//
// ASan knows one stack per host thread. After a swapcontext it does not know about, it takes the
// fiber's stack for a wild region and, when an exception is thrown there, unpoisons the wrong range
// (__asan_handle_no_return): false stack-buffer-overflow reports (google/sanitizers#189). So every
// switch is announced: start_switch() just before it, naming the stack being entered, and
// finish_switch() first thing on arrival, which also says which stack was left. A fiber that ends
// passes no fake-stack slot, which frees its fake frames (detect_stack_use_after_return). A fiber
// abandoned when its kernel faults never unwinds its frames, but the redzones they poisoned do not
// outlive it: a stack's shadow is cleared when the next fiber is laid out on it, as ASan's own
// swapcontext interceptor would (where ucontext is used, that interceptor does it too). In builds
// without ASan these helpers do nothing.
struct StackRange {
  const void* bottom = nullptr;  // lowest address
  std::size_t size = 0;
};

#ifdef SDGEN_EMU_ASAN
// A stack about to carry a new fiber: the frames of the fiber that ran on it last may have been
// abandoned mid-kernel (a fault), their redzones still poisoned. ASan's swapcontext interceptor
// clears them; our own switch (below) does not, so a fiber's stack is cleared when it is laid out.
void clear_stack_shadow(void* stack, std::size_t bytes) { __asan_unpoison_memory_region(stack, bytes); }
void start_switch(void** fake_stack_save, StackRange to) {
  __sanitizer_start_switch_fiber(fake_stack_save, to.bottom, to.size);
}
StackRange finish_switch(void* fake_stack_save) {
  StackRange from;
  __sanitizer_finish_switch_fiber(fake_stack_save, &from.bottom, &from.size);
  return from;
}
#else
void clear_stack_shadow(void*, std::size_t) {}
void start_switch(void**, StackRange) {}
StackRange finish_switch(void*) { return {}; }
#endif

// ---- the context switch
//
// glibc's swapcontext saves and restores the signal mask with a system call on every switch, and
// an emulated kernel switches fibers at every barrier and warp operation: with it, three quarters
// of the emulator's time went to the kernel. On x86-64 a switch is therefore the few instructions
// below: push the callee-saved registers (and MXCSR and the x87 control word, which the ABI also
// asks a callee to preserve), swap stack pointers, pop. A new fiber's stack is laid out as if it had
// been switched away from just before entering its entry function, so the first switch into it
// "returns" there, with the stack aligned as a call would leave it. Other architectures keep
// ucontext, correct and slower.
#if defined(__x86_64__)
extern "C" void sdgen_emu_switch_stacks(void** save_sp, void* load_sp);
asm(R"(
  .pushsection .text
  .p2align 4
  .globl sdgen_emu_switch_stacks
  .type sdgen_emu_switch_stacks, @function
sdgen_emu_switch_stacks:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size sdgen_emu_switch_stacks, .-sdgen_emu_switch_stacks
  .popsection
)");

struct FiberContext {
  void* sp = nullptr;
};

// Lays out `stack` so that the first switch into `c` enters `entry`, which must never return.
void prepare_fiber(FiberContext& c, void* stack, std::size_t bytes, void (*entry)()) {
  auto top = reinterpret_cast<std::uintptr_t>(stack) + bytes;
  top &= ~std::uintptr_t(15);
  auto* slot = reinterpret_cast<std::uint64_t*>(top);
  *--slot = 0;                                         // entry's return address: it never returns
  *--slot = reinterpret_cast<std::uint64_t>(entry);    // where the switch's `ret` goes
  for (int reg = 0; reg < 6; ++reg) *--slot = 0;       // rbp, rbx, r12-r15
  std::uint32_t control[2] = {0x1f80u, 0x037fu};       // MXCSR and x87 control word at reset
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(control[0]), "=m"(control[1]));
  *--slot = std::uint64_t(control[0]) | (std::uint64_t(control[1]) << 32);
  c.sp = slot;
}

void jump(FiberContext& from, const FiberContext& to) { sdgen_emu_switch_stacks(&from.sp, to.sp); }
#else
struct FiberContext {
  ucontext_t uc{};
};

void prepare_fiber(FiberContext& c, void* stack, std::size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}

void jump(FiberContext& from, const FiberContext& to) { swapcontext(&from.uc, &to.uc); }
#endif

// Saves the running context in `from` and runs `to`, whose stack is `to_stack`. Returns when a
// switch comes back, with the stack it came from.
StackRange switch_context(FiberContext& from, const FiberContext& to, StackRange to_stack) {
  void* fake_stack = nullptr;
  start_switch(&fake_stack, to_stack);
  jump(from, to);
  return finish_switch(fake_stack);
}

// Kernel code keeps little on its stack (fragments, a few accumulators), and 1024 threads of a
// block need 1024 stacks: 64 KiB each is ample and costs 64 MiB of address space at most.
constexpr std::size_t kStackBytes = 64 * 1024;

// Fiber stacks, kept for the host thread's lifetime and reused by every launch. Each has an
// inaccessible guard page below it, so an overflow stops with SIGSEGV instead of silently
// corrupting the neighbouring fiber's stack.
class StackPool {
 public:
  StackPool() : page_(std::size_t(sysconf(_SC_PAGESIZE))) {}
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool() {
    for (void* s : stacks_) munmap(s, page_ + kStackBytes);
  }
  void* stack(std::size_t i) {
    while (stacks_.size() <= i) {
      void* p =
          mmap(nullptr, page_ + kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
      if (p == MAP_FAILED) throw BackendError("CUDA emulator: cannot map a fiber stack");
      mprotect(p, page_, PROT_NONE);
      stacks_.push_back(p);
    }
    return static_cast<char*>(stacks_[i]) + page_;
  }

 private:
  std::size_t page_;
  std::vector<void*> stacks_;
};

StackPool& stack_pool() {
  thread_local StackPool pool;
  return pool;
}

SharedMemory& shared_memory() {
  thread_local SharedMemory memory;
  return memory;
}

enum class ThreadState : std::uint8_t { Runnable, AtBarrier, AtWarpOp, Exited };

struct AsyncCopy {
  std::byte* dst;
  std::array<std::byte, 16> data;
  const char* name;
  std::int64_t index;
};

struct ThreadSlot {
  FiberContext context;
  StackRange stack;
  uint3 index;
  ThreadState state = ThreadState::Runnable;
  // Where it waits: the barrier's or the warp operation's call site, and which operation.
  std::source_location site;
  WarpOp op = WarpOp::Syncwarp;
  int variant = 0;
  unsigned mask = 0;
  LaneRegisters regs;
  std::vector<AsyncCopy> uncommitted;
  std::deque<std::vector<AsyncCopy>> committed;
};

// A warp operation some lanes of `mask` have reached and the others not yet.
struct PendingWarpOp {
  WarpOp op;
  int variant;
  unsigned mask;
  unsigned arrived;
  std::source_location site;
};

struct WarpState {
  unsigned existing_lanes = 0;  // all 32, except in a block's last, partial warp
  std::uint32_t epoch = 0;      // completed full-warp __syncwarp()s
  std::vector<PendingWarpOp> pending;
};

std::string where(const std::source_location& site) {
  const std::string file = site.file_name();
  return cat(file.substr(file.find_last_of('/') + 1), ":", site.line());
}

bool same_site(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && std::strcmp(a.file_name(), b.file_name()) == 0;
}

std::string hex(unsigned mask) {
  static const char digits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += digits[(mask >> shift) & 0xf];
  return s;
}

std::string triple(const uint3& v) { return cat("(", v.x, ",", v.y, ",", v.z, ")"); }

const char* verb(Access a, bool present) {
  switch (a) {
    case Access::Read:
      return present ? "reads" : "read";
    case Access::Write:
      return present ? "writes" : "wrote";
    case Access::Atomic:
      return present ? "atomically updates" : "atomically updated";
  }
  return "";
}

class Launch;
thread_local Launch* active = nullptr;

class Launch {
 public:
  Launch(const char* name, dim3 grid, dim3 block, std::size_t dynamic_bytes, const std::function<void()>& body)
      : name_(name),
        grid_(grid),
        block_(block),
        body_(body),
        slots_(std::size_t(block.x) * block.y * block.z),
        warps_((slots_.size() + 31) / 32) {
    for (std::size_t w = 0; w < warps_.size(); ++w) {
      const std::size_t lanes = std::min<std::size_t>(32, slots_.size() - 32 * w);
      warps_[w].existing_lanes = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    }
    for (std::size_t t = 0; t < slots_.size(); ++t) slots_[t].index = index_of(int(t));
    shared_memory().begin_launch(dynamic_bytes);
  }

  void run() {
    blockDim = block_;
    gridDim = grid_;
    for (unsigned z = 0; z < grid_.z; ++z)
      for (unsigned y = 0; y < grid_.y; ++y)
        for (unsigned x = 0; x < grid_.x; ++x) run_block(uint3{x, y, z});
  }

  // ---- called from the running CUDA thread

  int current() const { return current_; }

  [[noreturn]] void fault_as(int thread, const std::string& what) const {
    throw KernelFault(
        cat("kernel '", name_, "', block ", triple(blockIdx), ", thread ", triple(index_of(thread)), ": ", what));
  }

  void syncthreads(const std::source_location& site) {
    ThreadSlot& me = slots_[std::size_t(current_)];
    me.state = ThreadState::AtBarrier;
    me.site = site;
    yield();
  }

  void warp_collective(WarpOp op, int variant, unsigned mask, LaneRegisters& regs, const std::source_location& site) {
    const int thread = current_;
    const int lane = thread % 32;
    WarpState& warp = warps_[std::size_t(thread / 32)];
    // Messages are built only when something is wrong: this runs for every shuffle.
    const auto name = [&] { return warp_op_name(op, variant); };
    if (((mask >> lane) & 1u) == 0)
      fault_as(thread, cat(name(), " at ", where(site), " with mask ", hex(mask),
                           ", which leaves out the calling lane ", lane));
    if ((mask & ~warp.existing_lanes) != 0)
      fault_as(thread, cat(name(), " at ", where(site), " with mask ", hex(mask),
                           " names lanes that do not exist: this warp has lanes ", hex(warp.existing_lanes),
                           " (the block has ", slots_.size(), " threads)"));

    auto pending = std::find_if(warp.pending.begin(), warp.pending.end(),
                                [&](const PendingWarpOp& p) { return (p.mask & mask) != 0; });
    if (pending == warp.pending.end()) {
      warp.pending.push_back(PendingWarpOp{op, variant, mask, 0, site});
      pending = warp.pending.end() - 1;
    } else {
      const auto others = [&] {
        return cat("lanes ", hex(pending->arrived), " wait in ", warp_op_name(pending->op, pending->variant), " at ",
                   where(pending->site));
      };
      if (pending->mask != mask)
        fault_as(thread, cat(name(), " at ", where(site), " with mask ", hex(mask), ", while ", others(), " with mask ",
                             hex(pending->mask), ": the lanes of a warp operation must all pass the same mask"));
      if (pending->op != op || pending->variant != variant)
        fault_as(thread, cat(name(), " at ", where(site), ", while ", others(),
                             ": every lane of the mask must execute the same warp operation"));
      if (requires_same_site(op) && !same_site(pending->site, site))
        fault_as(thread, cat(name(), " at ", where(site), ", while ", others(),
                             ": an .aligned instruction must be the same instruction in every lane"));
    }

    ThreadSlot& me = slots_[std::size_t(thread)];
    me.regs = regs;
    me.op = op;
    me.variant = variant;
    me.mask = mask;
    me.site = site;
    pending->arrived |= 1u << lane;
    if (pending->arrived == mask) {
      const PendingWarpOp done = *pending;
      warp.pending.erase(pending);
      complete(done, thread / 32);
    } else {
      me.state = ThreadState::AtWarpOp;
      yield();
    }
    regs = me.regs;
  }

  // Checks and records a shared-memory access made by `thread`.
  void shared_access_as(int thread, Access kind, const void* p, std::size_t bytes, const char* name,
                        std::int64_t index) {
    const std::size_t offset = shared_offset(thread, p, name, index);
    const AccessReport r =
        shared_memory().access(kind, offset, bytes, accessor(thread), epoch_, AccessMode::CheckAndRecord);
    if (r.problem != Problem::None) report(thread, kind, r, name, index);
  }

  void cp_async_issue(std::byte* dst, const std::byte* src, int src_bytes, const char* name, std::int64_t index) {
    const int thread = current_;
    const std::size_t offset = shared_offset(thread, dst, name, index);
    // The bytes may land at any moment from now on, so the copy conflicts with every access
    // that is not ordered before this point.
    const AccessReport r =
        shared_memory().access(Access::Write, offset, 16, accessor(thread), epoch_, AccessMode::CheckOnly);
    if (r.problem != Problem::None) report(thread, Access::Write, r, name, index);
    shared_memory().copy_issued(offset, 16, thread);
    AsyncCopy copy{dst, {}, name, index};
    if (src_bytes > 0) std::memcpy(copy.data.data(), src, std::size_t(src_bytes));
    slots_[std::size_t(thread)].uncommitted.push_back(copy);
  }

  void cp_async_commit() {
    ThreadSlot& me = slots_[std::size_t(current_)];
    me.committed.push_back(std::move(me.uncommitted));
    me.uncommitted.clear();
  }

  void cp_async_wait(int groups_left_pending) {
    ThreadSlot& me = slots_[std::size_t(current_)];
    while (me.committed.size() > std::size_t(groups_left_pending)) {
      for (const AsyncCopy& c : me.committed.front()) {
        shared_memory().copy_landed(std::size_t(shared_memory().offset_of(c.dst)), 16);
        shared_access_as(current_, Access::Write, c.dst, 16, c.name, c.index);
        std::memcpy(c.dst, c.data.data(), 16);
      }
      me.committed.pop_front();
    }
  }

 private:
  uint3 index_of(int thread) const {
    const auto t = unsigned(thread);
    return uint3{t % block_.x, t / block_.x % block_.y, t / (block_.x * block_.y)};
  }

  Accessor accessor(int thread) const {
    return Accessor{thread, thread / 32, thread % 32, warps_[std::size_t(thread / 32)].epoch};
  }

  std::size_t shared_offset(int thread, const void* p, const char* name, std::int64_t index) const {
    const std::int64_t offset = shared_memory().offset_of(p);
    if (offset < 0) fault_as(thread, cat(name, "[", index, "] is not in this block's shared memory"));
    return std::size_t(offset);
  }

  [[noreturn]] void report(int thread, Access kind, const AccessReport& r, const char* name, std::int64_t index) const {
    const std::string element = cat(name, "[", index, "]");
    switch (r.problem) {
      case Problem::Unwritten:
        fault_as(thread,
                 cat(verb(kind, true), " ", element,
                     " in shared memory, which no thread of this block has "
                     "written yet (a missing __syncthreads() between the stores and this read, or a missing store)"));
      case Problem::Race:
        fault_as(thread, cat("shared-memory race on ", element, ": thread ", triple(index_of(r.other_thread)), " ",
                             verb(r.other_access, false), " it and thread ", triple(index_of(thread)), " ",
                             verb(kind, true), " it with no __syncthreads()",
                             r.other_thread / 32 == thread / 32 ? " or __syncwarp()" : "", " between"));
      case Problem::CopyInFlight:
        fault_as(thread, cat(verb(kind, true), " ", element, " in shared memory while the cp.async that thread ",
                             triple(index_of(r.other_thread)),
                             " issued into it is still in flight (cp_async_wait "
                             "in the issuing thread, then __syncthreads() if other threads use the data)"));
      case Problem::None:
        break;
    }
    fault_as(thread, "shared-memory access failed");
  }

  // Runs on the fiber of the last lane to arrive; wakes the others.
  void complete(const PendingWarpOp& op, int warp) {
    WarpLanes lanes{};
    for (int lane = 0; lane < 32; ++lane)
      if ((op.mask >> lane) & 1u) lanes[std::size_t(lane)] = &slots_[std::size_t(warp * 32 + lane)].regs;
    if (op.op == WarpOp::Ldmatrix || op.op == WarpOp::LdmatrixTrans) read_ldmatrix_rows(op.variant, warp, lanes);
    try {
      complete_warp_op(op.op, op.variant, op.mask, lanes);
    } catch (const LaneFault& f) {
      fault_as(warp * 32 + f.lane, f.what);
    }
    WarpState& w = warps_[std::size_t(warp)];
    if (op.op == WarpOp::Syncwarp && op.mask == w.existing_lanes) ++w.epoch;
    for (int lane = 0; lane < 32; ++lane)
      if ((op.mask >> lane) & 1u) slots_[std::size_t(warp * 32 + lane)].state = ThreadState::Runnable;
  }

  // ldmatrix reads shared memory on behalf of the lanes that supplied the row addresses.
  void read_ldmatrix_rows(int matrices, int warp, const WarpLanes& lanes) {
    for (int lane = 0; lane < 8 * matrices; ++lane) {
      LaneRegisters& l = *lanes[std::size_t(lane)];
      const int thread = warp * 32 + lane;
      const std::size_t offset = shared_offset(thread, l.row.p, l.row.name, l.row.index);
      if (offset % 16 != 0)
        fault_as(thread, cat("ldmatrix row ", l.row.name, "[", l.row.index, "] is not 16-byte aligned"));
      shared_access_as(thread, Access::Read, l.row.p, 16, l.row.name, l.row.index);
      std::memcpy(l.row_data.data(), l.row.p, 16);
    }
  }

  // ---- scheduling

  static void fiber_entry() {
    Launch& l = *active;
    l.host_stack_ = finish_switch(nullptr);  // a new fiber has no fake stack to restore
    try {
      l.body_();
    } catch (...) {
      l.fault_ = std::current_exception();
    }
    l.slots_[std::size_t(l.current_)].state = ThreadState::Exited;
    start_switch(nullptr, l.host_stack_);  // for good: no fake stack to keep
    FiberContext finished;
    jump(finished, l.scheduler_);
  }

  void yield() { host_stack_ = switch_context(slots_[std::size_t(current_)].context, scheduler_, host_stack_); }

  void run_block(uint3 block_index) {
    blockIdx = block_index;
    shared_memory().begin_block(++epoch_);
    for (WarpState& w : warps_) w.pending.clear();
    for (std::size_t t = 0; t < slots_.size(); ++t) {
      ThreadSlot& s = slots_[t];
      s.state = ThreadState::Runnable;
      s.uncommitted.clear();
      s.committed.clear();
      void* stack = stack_pool().stack(t);
      s.stack = {stack, kStackBytes};
      clear_stack_shadow(stack, kStackBytes);
      prepare_fiber(s.context, stack, kStackBytes, &Launch::fiber_entry);
    }
    for (;;) {
      bool ran = false;
      for (std::size_t t = 0; t < slots_.size(); ++t) {
        if (slots_[t].state != ThreadState::Runnable) continue;
        current_ = int(t);
        threadIdx = slots_[t].index;
        switch_context(scheduler_, slots_[t].context, slots_[t].stack);
        ran = true;
        if (fault_) std::rethrow_exception(std::exchange(fault_, nullptr));
      }
      if (ran) continue;
      if (std::all_of(slots_.begin(), slots_.end(), [](const ThreadSlot& s) { return s.state == ThreadState::Exited; }))
        return;
      release_barrier_or_report();
    }
  }

  // No thread can run: either every live thread waits at the same __syncthreads(), which then
  // opens, or the block can never finish, which is reported.
  void release_barrier_or_report() {
    for (std::size_t t = 0; t < slots_.size(); ++t)
      if (slots_[t].state == ThreadState::AtWarpOp) report_stuck_warp_op(int(t));
    int first = -1;
    for (std::size_t t = 0; t < slots_.size(); ++t) {
      const ThreadSlot& s = slots_[t];
      if (s.state == ThreadState::AtBarrier && first < 0) first = int(t);
    }
    const std::source_location& site = slots_[std::size_t(first)].site;
    for (std::size_t t = 0; t < slots_.size(); ++t) {
      const ThreadSlot& s = slots_[t];
      if (s.state == ThreadState::Exited)
        fault_as(int(t), cat("has exited, but ", describe(ThreadState::AtBarrier, site),
                             ": a __syncthreads() must be reached by every thread of the block (is it inside a "
                             "branch, or after an early return?)"));
      if (!same_site(s.site, site))
        fault_as(int(t),
                 cat("waits at __syncthreads() at ", where(s.site), ", but ", describe(ThreadState::AtBarrier, site),
                     ": all threads of a block must meet at the same __syncthreads()"));
    }
    ++epoch_;
    for (ThreadSlot& s : slots_) s.state = ThreadState::Runnable;
  }

  // Which threads wait in `state` at `site`, as "threads (0,0,0)..(15,0,0) wait at __syncthreads() at f.cuh:12".
  std::string describe(ThreadState state, const std::source_location& site) const {
    std::vector<std::pair<int, int>> ranges;
    for (std::size_t t = 0; t < slots_.size(); ++t) {
      const ThreadSlot& s = slots_[t];
      if (s.state != state || !same_site(s.site, site)) continue;
      if (!ranges.empty() && ranges.back().second == int(t) - 1)
        ranges.back().second = int(t);
      else
        ranges.emplace_back(int(t), int(t));
    }
    std::string who;
    for (std::size_t i = 0; i < ranges.size() && i < 4; ++i) {
      who += i > 0 ? ", " : "";
      who += triple(index_of(ranges[i].first));
      if (ranges[i].second != ranges[i].first) who += ".." + triple(index_of(ranges[i].second));
    }
    if (ranges.size() > 4) who += ", ...";
    return cat("threads ", who, " wait at __syncthreads() at ", where(site));
  }

  // A warp operation whose lanes cannot all arrive any more; blames the first missing lane.
  [[noreturn]] void report_stuck_warp_op(int waiting) const {
    const ThreadSlot& w = slots_[std::size_t(waiting)];
    const int warp = waiting / 32;
    const WarpState& ws = warps_[std::size_t(warp)];
    const auto pending = std::find_if(ws.pending.begin(), ws.pending.end(),
                                      [&](const PendingWarpOp& p) { return (p.mask >> (waiting % 32)) & 1u; });
    const unsigned missing = pending->mask & ~pending->arrived;
    const int thread = warp * 32 + std::countr_zero(missing);
    const ThreadSlot& m = slots_[std::size_t(thread)];
    const std::string waits = cat("lanes ", hex(pending->arrived), " of its warp wait in ",
                                  warp_op_name(w.op, w.variant), " at ", where(w.site), " with mask ", hex(w.mask));
    if (m.state == ThreadState::Exited) fault_as(thread, cat("has exited, but ", waits, ", which includes it"));
    if (m.state == ThreadState::AtBarrier)
      fault_as(thread, cat("waits at __syncthreads() at ", where(m.site), ", but ", waits,
                           ", which includes it: the block can never continue"));
    fault_as(thread, cat("waits in ", warp_op_name(m.op, m.variant), " at ", where(m.site), " with mask ", hex(m.mask),
                         ", but ", waits, ", which includes it: the warp can never continue"));
  }

  const char* name_;
  dim3 grid_;
  dim3 block_;
  const std::function<void()>& body_;
  std::vector<ThreadSlot> slots_;
  std::vector<WarpState> warps_;
  FiberContext scheduler_{};
  StackRange host_stack_;  // the scheduler's (the host thread's), as ASan reports it to arriving fibers
  int current_ = 0;
  std::uint32_t epoch_ = 0;
  std::exception_ptr fault_;
};

Launch& running(const char* what) {
  if (active == nullptr) throw BackendError(cat(what, " used outside a running kernel"));
  return *active;
}

void validate(const char* name, dim3 grid, dim3 block, std::size_t dynamic_bytes) {
  const std::uint64_t threads = std::uint64_t(block.x) * block.y * block.z;
  std::string problem;
  if (threads == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
    problem = "a grid or block dimension is 0";
  else if (threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64)
    problem = cat("a block of ", block.x, "x", block.y, "x", block.z,
                  " threads exceeds the limits (1024 threads; x, y <= 1024, z <= 64)");
  else if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    problem =
        cat("a grid of ", grid.x, "x", grid.y, "x", grid.z, " blocks exceeds the limits (x < 2^31, y, z <= 65535)");
  else if (dynamic_bytes > kMaxSharedBytesPerBlock)
    problem = cat(dynamic_bytes, " bytes of dynamic shared memory exceed the ", kMaxSharedBytesPerBlock,
                  " an sm_80 block can have");
  if (!problem.empty()) throw BackendError(cat("launching kernel ", name, " failed: ", problem));
  if (active != nullptr)
    throw BackendError(cat("kernel ", name, " launched from inside a kernel: dynamic parallelism is not emulated"));
}

}  // namespace

[[noreturn]] void fault(const std::string& what) {
  if (active == nullptr) throw BackendError(what);
  active->fault_as(active->current(), what);
}

int lane_id() { return running("lane_id()").current() % 32; }

void run_grid(const char* kernel_name, dim3 grid, dim3 block, std::size_t dynamic_shared_bytes,
              const std::function<void()>& thread_body) {
  validate(kernel_name, grid, block, dynamic_shared_bytes);
  Launch launch(kernel_name, grid, block, dynamic_shared_bytes, thread_body);
  struct Activation {
    explicit Activation(Launch* l) { active = l; }
    ~Activation() { active = nullptr; }
  } activation(&launch);
  launch.run();
}

void syncthreads(std::source_location where) { running("__syncthreads()").syncthreads(where); }

std::byte* static_shared(const SharedSite& site) {
  running("SDGEN_SHARED");
  return shared_memory().static_array(site);
}

SharedRegion dynamic_shared() {
  running("SDGEN_DYNAMIC_SHARED");
  return shared_memory().dynamic_region();
}

void shared_access(Access kind, const void* p, std::size_t bytes, const char* name, std::int64_t index) {
  Launch& l = running("shared memory");
  l.shared_access_as(l.current(), kind, p, bytes, name, index);
}

void warp_collective(WarpOp op, int variant, unsigned mask, LaneRegisters& regs, std::source_location where) {
  if (active == nullptr) throw BackendError(cat(warp_op_name(op, variant), " used outside a running kernel"));
  active->warp_collective(op, variant, mask, regs, where);
}

void cp_async_issue(std::byte* dst, const std::byte* src, int src_bytes, const char* dst_name, std::int64_t dst_index) {
  running("cp.async").cp_async_issue(dst, src, src_bytes, dst_name, dst_index);
}

void cp_async_commit() { running("cp.async.commit_group").cp_async_commit(); }

void cp_async_wait(int groups_left_pending) { running("cp.async.wait_group").cp_async_wait(groups_left_pending); }

}  // namespace sdgen::cuda::emu
