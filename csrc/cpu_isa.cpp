#include "cpu_isa.h"

#include <cstdlib>
#include <cstring>

namespace pixelcnn {
namespace cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "scalar";
  }
}

bool runs(Isa isa) {
  if (isa == Isa::kScalar) return true;
#if PIXELCNN_X86 && (defined(__GNUC__) || defined(__clang__))
  static const bool avx2 = [] {
    __builtin_cpu_init();  // may run before libgcc's own constructor has filled in the CPU model
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
  }();
  return isa == Isa::kAvx2 ? avx2 : avx512;
#else
  return false;
#endif
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (runs(isa)) out.push_back(isa);
  }
  return out;
}

bool selected_isa(Isa* isa, std::string* error) {
  const char* forced = std::getenv("PIXELCNN_CPU_ISA");
  if (forced == nullptr || forced[0] == '\0') {
    *isa = available_isas().back();
    return true;
  }
  std::string names;
  for (Isa candidate : available_isas()) names += std::string(names.empty() ? "" : ", ") + isa_name(candidate);
  for (Isa candidate : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (std::strcmp(forced, isa_name(candidate)) != 0) continue;
    if (!runs(candidate)) {
      *error = std::string("PIXELCNN_CPU_ISA=") + forced +
               ": this CPU (or this non-x86 build) cannot run it; it runs " + names +
               " (unset the variable to take the widest)";
      return false;
    }
    *isa = candidate;
    return true;
  }
  *error = std::string("PIXELCNN_CPU_ISA=") + forced + " names no instruction set; use scalar, avx2 or avx512 (this " +
           "CPU runs " + names + "), or unset it";
  return false;
}

}  // namespace cpu
}  // namespace pixelcnn
