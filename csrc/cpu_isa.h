// The CPU vector instruction sets the C++ sampler has kernels for, what this CPU runs, and the one the sampler uses
// (docs/DESIGN.md §6). Independent of torch, so that the Python module can report it too.
#pragma once

#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define PIXELCNN_X86 1
#else
#define PIXELCNN_X86 0
#endif

namespace pixelcnn {
namespace cpu {

// scalar: portable C++ (a multiply and an add per term); avx2: AVX2 + FMA; avx512: AVX-512F. The vector paths
// exist only in x86 builds.
enum class Isa { kScalar, kAvx2, kAvx512 };

const char* isa_name(Isa isa);

// Whether this build has kernels for `isa` and this CPU can run them.
bool runs(Isa isa);

// Every ISA runs() says yes to, scalar first.
std::vector<Isa> available_isas();

// The ISA the sampler uses: the one named by PIXELCNN_CPU_ISA (scalar | avx2 | avx512) if that variable is set and
// not empty, else the widest this CPU runs. Read on every call, so a process may switch. Returns false and sets
// `error` when the variable names no known ISA or one this CPU cannot run.
bool selected_isa(Isa* isa, std::string* error);

}  // namespace cpu
}  // namespace pixelcnn
