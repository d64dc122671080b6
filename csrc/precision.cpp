// Precision switches of libtorch that the tch crate does not expose (issue 8): TF32 for cuBLAS/cuDNN and autocast
// with a chosen dtype on CPU or CUDA. A plain C ABI, called from src/core/precision.rs; nothing here allocates tensors.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// TF32 tensor-core math for float32 matmuls (cuBLAS) and convolutions (cuDNN). Only CUDA reads these flags.
void hg_set_tf32(int on) {
  at::globalContext().setAllowTF32CuBLAS(on != 0);
  at::globalContext().setAllowTF32CuDNN(on != 0);
}

int hg_tf32() { return at::globalContext().allowTF32CuBLAS() ? 1 : 0; }

// Enters an autocast region with bfloat16 on CPU (cuda = 0) or CUDA (cuda = 1). Returns the previous state as
// (enabled << 8) | dtype, for hg_autocast_exit.
int hg_autocast_enter_bf16(int cuda) {
  const auto dt = device_type(cuda);
  const int prev = (at::autocast::is_autocast_enabled(dt) ? 1 << 8 : 0) |
                   static_cast<int>(at::autocast::get_autocast_dtype(dt));
  at::autocast::set_autocast_dtype(dt, at::kBFloat16);
  at::autocast::set_autocast_enabled(dt, true);
  at::autocast::increment_nesting();
  return prev;
}

// Leaves the region entered with hg_autocast_enter_bf16, restoring the previous state; the cache of cast weights is
// freed when the outermost region ends.
void hg_autocast_exit(int cuda, int prev) {
  const auto dt = device_type(cuda);
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(dt, (prev >> 8) != 0);
  at::autocast::set_autocast_dtype(dt, static_cast<at::ScalarType>(prev & 0xff));
}

}  // extern "C"
