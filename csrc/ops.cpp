// libtorch entry points that the tch crate does not expose (issue 16), behind a plain C ABI called from
// src/core/native.rs: leaky ReLU with a chosen slope (one differentiable kernel, twice differentiable), pixel norm as
// one autograd function with a hand-written backward, conversion to and test of the channels-last (NHWC) memory
// format, and libtorch's legacy CPU profiler summarised per operator.
//
// Tensors cross the boundary as tch does it (torch-sys's `tensor` is `torch::Tensor*`): arguments are borrowed,
// results are new heap tensors owned by the caller (tch::Tensor::from_ptr). A C++ exception never crosses the ABI:
// it becomes a null result and a message read with hg_last_error.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {
thread_local std::string last_error;

template <typename F>
at::Tensor* guarded(F&& f) {
  try {
    return new at::Tensor(f());
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

// Pixel norm y = x·r over dim 1, r = (‖x‖²/C + eps)^(−1/2) (docs/spec/progan_hp.md §1.2), as one autograd node.
// Forward: one norm reduction and one product. Backward, from dy/dx·g = r·g − x·r³·(g·x)/C: one product-reduction
// and two elementwise passes, where autograd through the composite takes about twice as many and accumulates the two
// uses of x. The backward is made of differentiable ATen ops, so a double backward through it still works.
struct PixelNorm : public torch::autograd::Function<PixelNorm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double eps) {
    const double c = static_cast<double>(x.size(1));
    auto n = at::linalg_vector_norm(x, 2, at::IntArrayRef{1}, /*keepdim=*/true);
    auto r = n.square().div_(c).add_(eps).rsqrt_();
    ctx->save_for_backward({x, r});
    ctx->saved_data["c"] = c;
    return x * r;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& r = saved[1];
    const double c = ctx->saved_data["c"].toDouble();
    const auto& g = grads[0];
    auto coef = r.pow(3) * (g * x).sum(1, /*keepdim=*/true) / c;
    return {at::addcmul(g * r, x, coef, -1), at::Tensor()};
  }
};

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}
}  // namespace

extern "C" {

const char* hg_last_error() { return last_error.c_str(); }

// max(x, slope*x) as libtorch's leaky_relu: its backward is itself differentiable, which WGAN-GP's double backward
// needs.
at::Tensor* hg_leaky_relu(const at::Tensor* x, double slope) {
  return guarded([&] { return at::leaky_relu(*x, slope); });
}

at::Tensor* hg_pixel_norm(const at::Tensor* x, double eps) {
  return guarded([&] { return PixelNorm::apply(*x, eps); });
}

// The same values laid out NHWC (a copy unless already so); autograd records it like any copy.
at::Tensor* hg_channels_last(const at::Tensor* x) {
  return guarded([&] { return x->contiguous(at::MemoryFormat::ChannelsLast); });
}

int hg_is_channels_last(const at::Tensor* x) {
  return x->dim() == 4 && x->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
}

// Starts libtorch's legacy profiler on this thread (CPU timings of every operator, including autograd's backward
// operators, which run on the calling thread for CPU tensors).
int hg_profiler_start() {
  try {
    torch::autograd::profiler::enableProfilerLegacy(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return -1;
  }
}

// Stops the profiler and returns one line per operator, "name\tcalls\tself_us\ttotal_us", sorted by self time (free
// it with hg_free_string). Self time is the operator's time minus that of the operators it called.
char* hg_profiler_stop() {
  try {
    auto lists = torch::autograd::profiler::disableProfilerLegacy();
    struct Stat {
      long calls = 0;
      double self_us = 0, total_us = 0;
    };
    std::map<std::string, Stat> stats;
    for (auto& events : lists) {
      struct Open {
        const torch::autograd::profiler::LegacyEvent* push;
        double children_us;
      };
      std::vector<Open> stack;
      for (auto& e : events) {
        using torch::autograd::profiler::EventKind;
        if (e.kind() == EventKind::PushRange) {
          stack.push_back({&e, 0.0});
        } else if (e.kind() == EventKind::PopRange && !stack.empty()) {
          Open open = stack.back();
          stack.pop_back();
          double total = open.push->cpuElapsedUs(e);
          auto& s = stats[open.push->name()];
          s.calls += 1;
          s.total_us += total;
          s.self_us += total - open.children_us;
          if (!stack.empty()) stack.back().children_us += total;
        }
      }
    }
    std::vector<std::pair<std::string, Stat>> rows(stats.begin(), stats.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto& a, const auto& b) { return a.second.self_us > b.second.self_us; });
    std::ostringstream out;
    for (auto& [name, s] : rows) {
      out << name << '\t' << s.calls << '\t' << s.self_us << '\t' << s.total_us << '\n';
    }
    return copy_string(out.str());
  } catch (const std::exception& e) {
    last_error = e.what();
    return nullptr;
  }
}

void hg_free_string(char* s) { std::free(s); }

}  // extern "C"
