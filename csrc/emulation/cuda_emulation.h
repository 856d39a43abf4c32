// A small CUDA emulation for the host compiler: the kernels' own source (csrc/cuda/*.cuh) runs on the CPU, so CI
// executes them and compares them bit for bit with the CPU op (docs/DESIGN.md §6).
//
// Model: the blocks of a grid run one after another; the threads of a block run as cooperative fibers (ucontext, or
// a register-saving switch on x86-64) that switch only at __syncthreads(), so a block sees exactly the interleavings
// a barrier allows. __shared__ variables become per-OS-thread statics (one block runs at a time, so they are
// per-block storage); dynamic shared memory is one buffer per launch. threadIdx/blockIdx/blockDim/gridDim are the
// running fiber's. Between two barriers the threads run one after another, in increasing threadIdx order in even
// blocks and decreasing in odd ones: a kernel whose result depends on that order (a data race on a GPU) gives
// different results in different blocks. Warp primitives are not provided: the kernels use shared memory and
// __syncthreads() only, and a kernel that used one would not compile here.
//
// What it checks like a GPU would: block size (<= 1024 threads), grid size (x < 2^31, y and z <= 65535), dynamic
// shared memory above 48 KB only after the kernel's attribute allows it (and never above the device's opt-in limit),
// and a barrier that some threads of a block reach after others have exited (undefined on a GPU, an error here).
// Each launch is counted (launch_count()), so tests can assert launches per step.
#pragma once

#if defined(__CUDACC__)
#error "cuda_emulation.h is for the host compiler; nvcc builds the real kernels"
#endif

#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define PIXELCNN_EMU_ASAN 1
#elif defined(__x86_64__) && defined(__linux__) && !defined(__CET__)
// glibc's swapcontext makes a system call (the signal mask) per switch; on x86-64 a fiber switch saves the
// callee-saved registers and the FP control words itself, about 10x faster. ASan builds and builds with shadow
// stacks (-fcf-protection: __CET__) keep ucontext.
#define PIXELCNN_EMU_FAST_SWITCH 1
extern "C" void pixelcnn_emu_switch(void** save_sp, void* next_sp);
__asm__(
    ".pushsection .text\n"
    ".weak pixelcnn_emu_switch\n"
    ".type pixelcnn_emu_switch, @function\n"
    "pixelcnn_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $16, %rsp\n  stmxcsr 8(%rsp)\n  fnstcw (%rsp)\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  fldcw (%rsp)\n  ldmxcsr 8(%rsp)\n  addq $16, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size pixelcnn_emu_switch, .-pixelcnn_emu_switch\n"
    ".popsection\n");
#endif

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef struct CUstream_st* cudaStream_t;

namespace pixelcnn_emu {

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr size_t kDefaultSharedBytes = 48 * 1024;  // without cudaFuncAttributeMaxDynamicSharedMemorySize
constexpr size_t kOptinSharedBytes = 227 * 1024;   // sm_90's opt-in limit per block
constexpr int kMultiprocessors = 1;                // few on purpose: persistent grids then loop over their work
constexpr size_t kStackBytes = 256 * 1024;         // per fiber (kernels keep small local arrays)

enum class FiberState { kRunning, kAtBarrier, kDone };

// A suspended execution context: a saved stack pointer (fast switch) or a ucontext.
struct Context {
#if defined(PIXELCNN_EMU_FAST_SWITCH)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
};

inline void swap(Context& from, Context& to) {
#if defined(PIXELCNN_EMU_FAST_SWITCH)
  pixelcnn_emu_switch(&from.sp, to.sp);
#else
  if (swapcontext(&from.uc, &to.uc) != 0) {
    std::fprintf(stderr, "pixelcnn CUDA emulation: swapcontext failed\n");
    std::abort();
  }
#endif
}

// `ctx` starts `entry` (which must never return) on the stack [stack, stack + size).
inline void make_context(Context& ctx, char* stack, size_t size, void (*entry)()) {
#if defined(PIXELCNN_EMU_FAST_SWITCH)
  // the frame pixelcnn_emu_switch pops: FP control words, six registers, then `entry` as the return address;
  // entry then sees the stack alignment of a called function (rsp + 8 a multiple of 16)
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  uint64_t* frame = reinterpret_cast<uint64_t*>(top) - 10;
  std::memset(frame, 0, 10 * sizeof(uint64_t));
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(reinterpret_cast<char*>(frame), &fpucw, sizeof(fpucw));
  std::memcpy(reinterpret_cast<char*>(frame) + 8, &mxcsr, sizeof(mxcsr));
  frame[8] = reinterpret_cast<uint64_t>(entry);
  ctx.sp = frame;
#else
  if (getcontext(&ctx.uc) != 0) throw std::runtime_error("CUDA emulation: getcontext failed");
  ctx.uc.uc_stack.ss_sp = stack;
  ctx.uc.uc_stack.ss_size = size;
  ctx.uc.uc_link = nullptr;
  makecontext(&ctx.uc, entry, 0);
#endif
}

struct Fiber {
  Context ctx;
  dim3 thread_idx;
  FiberState state = FiberState::kRunning;
  char* stack = nullptr;
  void* fake_stack = nullptr;  // AddressSanitizer's fake frames of this fiber while it is switched out
};

struct Block {
  dim3 block_idx, block_dim, grid_dim;
  unsigned char* dynamic_shared = nullptr;
  Fiber* current = nullptr;
  Context scheduler;
  const std::function<void()>* body = nullptr;
  Fiber *begin = nullptr, *end = nullptr;  // the block's fibers
  const void* scheduler_stack = nullptr;   // AddressSanitizer's view of the scheduler's stack
  size_t scheduler_stack_size = 0;
};

inline Block*& active_block() {
  static thread_local Block* block = nullptr;
  return block;
}

inline Block& block() {
  Block* b = active_block();
  if (b == nullptr) {
    std::fprintf(stderr, "pixelcnn CUDA emulation: device code ran outside a kernel launch\n");
    std::abort();
  }
  return *b;
}

inline std::atomic<long long>& launch_counter() {
  static std::atomic<long long> launches{0};
  return launches;
}

// Kernels launched so far in this process (every launch, whatever the kernel).
inline long long launch_count() { return launch_counter().load(); }

struct Attributes {
  std::mutex mutex;
  std::map<const void*, size_t> max_dynamic_shared;
};

inline Attributes& attributes() {
  static Attributes a;
  return a;
}

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
inline void set_max_dynamic_shared(const void* kernel, size_t bytes) {
  if (bytes > kOptinSharedBytes) {
    throw std::runtime_error("CUDA emulation: cudaFuncSetAttribute: " + std::to_string(bytes) +
                             " bytes of dynamic shared memory exceed the device limit of " +
                             std::to_string(kOptinSharedBytes));
  }
  std::lock_guard<std::mutex> lock(attributes().mutex);
  attributes().max_dynamic_shared[kernel] = bytes;
}

inline size_t allowed_dynamic_shared(const void* kernel) {
  std::lock_guard<std::mutex> lock(attributes().mutex);
  auto it = attributes().max_dynamic_shared.find(kernel);
  return it == attributes().max_dynamic_shared.end() ? kDefaultSharedBytes : it->second;
}

// AddressSanitizer must be told about every stack switch (no-ops in other builds).
inline void switching(void** fake_stack_save, const void* bottom, size_t size) {
#if defined(PIXELCNN_EMU_ASAN)
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

inline void switched(void* fake_stack, const void** old_bottom, size_t* old_size) {
#if defined(PIXELCNN_EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack, old_bottom, old_size);
#else
  (void)fake_stack, (void)old_bottom, (void)old_size;
#endif
}

// A barrier: the fiber stops here and the next fiber still running before its own barrier continues (directly,
// one switch per thread); the last one returns to the scheduler, which starts the next round.
inline void syncthreads() {
  Block& b = block();
  Fiber* f = b.current;
  f->state = FiberState::kAtBarrier;
  Fiber* next = f + 1;
  while (next != b.end && next->state != FiberState::kRunning) ++next;
  if (next != b.end) {
    b.current = next;
    switching(&f->fake_stack, next->stack, kStackBytes);
    swap(f->ctx, next->ctx);
  } else {
    switching(&f->fake_stack, b.scheduler_stack, b.scheduler_stack_size);
    swap(f->ctx, b.scheduler);
  }
  switched(f->fake_stack, nullptr, nullptr);  // resumed: b.current == f again
}

[[noreturn]] inline void fiber_entry() {
  Block& b = block();
  if (b.scheduler_stack == nullptr) {
    switched(nullptr, &b.scheduler_stack, &b.scheduler_stack_size);  // the launch's first fiber: from the scheduler
  } else {
    switched(nullptr, nullptr, nullptr);
  }
  (*b.body)();
  Fiber* f = b.current;
  f->state = FiberState::kDone;
  switching(nullptr, b.scheduler_stack, b.scheduler_stack_size);
  swap(f->ctx, b.scheduler);  // never resumed
  std::abort();
}

// A fresh fiber that runs the block's body on its own stack.
inline void init_fiber(Fiber& f, char* stack, dim3 thread_idx) {
  make_context(f.ctx, stack, kStackBytes, fiber_entry);
  f.stack = stack;
  f.thread_idx = thread_idx;
  f.state = FiberState::kRunning;
  f.fake_stack = nullptr;
}

inline void resume(Block& b, Fiber& f) {
  b.current = &f;
  void* fake_stack = nullptr;
  switching(&fake_stack, f.stack, kStackBytes);
  swap(b.scheduler, f.ctx);
  switched(fake_stack, nullptr, nullptr);
}

inline std::string dims(const dim3& d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

inline void run_block(Block& b, std::vector<Fiber>& fibers) {
  for (;;) {
    for (Fiber& f : fibers) {
      if (f.state == FiberState::kRunning) resume(b, f);
    }
    size_t done = 0, waiting = 0;
    for (const Fiber& f : fibers) {
      done += f.state == FiberState::kDone;
      waiting += f.state == FiberState::kAtBarrier;
    }
    if (done == fibers.size()) return;
    if (done > 0) {
      throw std::runtime_error("CUDA emulation: in block " + dims(b.block_idx) + ", " + std::to_string(waiting) +
                               " threads wait at __syncthreads() that " + std::to_string(done) +
                               " threads exited without reaching (a barrier in divergent code)");
    }
    for (Fiber& f : fibers) f.state = FiberState::kRunning;
  }
}

// kernel<<<grid, block_dim, shared_bytes>>>(...) with `body` calling the kernel function.
inline void launch(const void* kernel, dim3 grid, dim3 block_dim, size_t shared_bytes,
                   const std::function<void()>& body) {
  const unsigned long long threads = 1ull * block_dim.x * block_dim.y * block_dim.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || block_dim.z > 64) {
    throw std::runtime_error("CUDA emulation: invalid block size " + dims(block_dim) + " (at most 1024 threads)");
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    throw std::runtime_error("CUDA emulation: invalid grid size " + dims(grid) +
                             " (x in 1..2^31-1, y and z in 1..65535)");
  }
  const size_t allowed = allowed_dynamic_shared(kernel);
  if (shared_bytes > allowed) {
    throw std::runtime_error("CUDA emulation: " + std::to_string(shared_bytes) +
                             " bytes of dynamic shared memory requested, the kernel allows " + std::to_string(allowed) +
                             " (set cudaFuncAttributeMaxDynamicSharedMemorySize)");
  }
  launch_counter().fetch_add(1);
  std::vector<Fiber> fibers(threads);
  std::unique_ptr<char[]> stacks(new char[threads * kStackBytes]);
  std::vector<double> shared((shared_bytes + sizeof(double) - 1) / sizeof(double) + 1);
  Block b;
  b.grid_dim = grid;
  b.block_dim = block_dim;
  b.body = &body;
  b.dynamic_shared = reinterpret_cast<unsigned char*>(shared.data());
  b.begin = fibers.data();
  b.end = fibers.data() + fibers.size();
  struct Restore {
    Block* previous;
    ~Restore() { active_block() = previous; }
  } restore{active_block()};
  active_block() = &b;
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.block_idx = dim3(bx, by, bz);
        // threads run in increasing threadIdx order in even blocks and in decreasing order in odd ones, so that
        // a result that depends on the order of threads between two barriers (a race on a GPU) shows
        const bool reverse = (bx + grid.x * (by + grid.y * bz)) % 2 == 1;
        for (size_t i = 0; i < threads; ++i) {
          const size_t t = reverse ? threads - 1 - i : i;
          init_fiber(fibers[i], stacks.get() + i * kStackBytes,
                     dim3(t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)));
        }
        run_block(b, fibers);
      }
    }
  }
}

}  // namespace pixelcnn_emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __syncthreads() ::pixelcnn_emu::syncthreads()
#define threadIdx (::pixelcnn_emu::block().current->thread_idx)
#define blockIdx (::pixelcnn_emu::block().block_idx)
#define blockDim (::pixelcnn_emu::block().block_dim)
#define gridDim (::pixelcnn_emu::block().grid_dim)
