// libtorch functions that tch 0.24 does not expose, behind a small C ABI (see src/torch_ext.rs).
//
// Tensors cross as `at::Tensor*`, which is what tch's `C_tensor` pointers are. Every function
// returns 0 on success and 1 on a C++ exception, whose message `deepres_last_error` gives.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <ATen/CPUGeneratorImpl.h>

#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {
thread_local std::string last_error;
thread_local std::string profile_text;

std::vector<at::Tensor> list(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}
// CUDA autocast's state on this thread: whether it is on (bit 0) and its dtype (the bits above).
int autocast_state() {
  int dtype = static_cast<int>(at::autocast::get_autocast_dtype(at::kCUDA));
  return (dtype << 1) | (at::autocast::is_autocast_enabled(at::kCUDA) ? 1 : 0);
}
}  // namespace

#define DEEPRES_TRY(...)                  \
  try {                                   \
    __VA_ARGS__;                          \
    return 0;                             \
  } catch (const std::exception& e) {     \
    last_error = e.what();                \
    return 1;                             \
  }

extern "C" {

const char* deepres_last_error() { return last_error.c_str(); }

// Enters CUDA autocast with dtype bf16 (bf16 != 0) or fp16, as torch.autocast("cuda", dtype)
// does: *prev receives the previous state (whether autocast was on, bit 0, and its dtype, the
// bits above) for deepres_autocast_exit, so that a region nested in another of another dtype
// gives the outer one its dtype back. (tch's autocast goes through deprecated calls that print
// a warning on every use.)
int deepres_autocast_enter(int bf16, int* prev) {
  DEEPRES_TRY({
    *prev = autocast_state();
    at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
  })
}

// Leaves the autocast region entered by deepres_autocast_enter: the weight-cast cache is
// cleared when the outermost region ends, and the previous state (on or off, dtype) restored.
int deepres_autocast_exit(int prev) {
  DEEPRES_TRY({
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_dtype(at::kCUDA, static_cast<at::ScalarType>(prev >> 1));
    at::autocast::set_autocast_enabled(at::kCUDA, (prev & 1) != 0);
  })
}

// CUDA autocast's state on this thread, encoded as deepres_autocast_enter's *prev.
int deepres_autocast_state(int* state) { DEEPRES_TRY(*state = autocast_state()) }

// PyTorch's fused SGD (torch._fused_sgd_): for every i,
//   d = g_i / grad_scale + wd·p_i;  buf_i = d (first step) or μ·buf_i + d;
//   p_i -= lr · (nesterov ? d + μ·buf_i : buf_i),
// skipped entirely where found_inf (a 1-element float tensor) is nonzero. grad_scale and
// found_inf may be null; bufs is empty (n_bufs = 0) when momentum is 0. One launch per chunk
// of tensors instead of several per tensor.
int deepres_fused_sgd(at::Tensor** params, at::Tensor** grads, at::Tensor** bufs, size_t n,
                      size_t n_bufs, double weight_decay, double momentum, double lr, int nesterov,
                      int first_step, at::Tensor* grad_scale, at::Tensor* found_inf) {
  DEEPRES_TRY({
    std::optional<at::Tensor> gs, fi;
    if (grad_scale) gs = *grad_scale;
    if (found_inf) fi = *found_inf;
    at::_fused_sgd_(list(params, n), list(grads, n), list(bufs, n_bufs), weight_decay, momentum, lr,
                    /*dampening=*/0.0, nesterov != 0, /*maximize=*/false, first_step != 0, gs, fi);
  })
}

// deepres_fused_sgd with the learning rate read from a 1-element tensor on the device (so a
// captured CUDA graph can take a new rate per step without being captured again).
int deepres_fused_sgd_tensor_lr(at::Tensor** params, at::Tensor** grads, at::Tensor** bufs,
                                size_t n, size_t n_bufs, double weight_decay, double momentum,
                                at::Tensor* lr, int nesterov, int first_step,
                                at::Tensor* grad_scale, at::Tensor* found_inf) {
  DEEPRES_TRY({
    std::optional<at::Tensor> gs, fi;
    if (grad_scale) gs = *grad_scale;
    if (found_inf) fi = *found_inf;
    at::_fused_sgd_(list(params, n), list(grads, n), list(bufs, n_bufs), weight_decay, momentum,
                    *lr, /*dampening=*/0.0, nesterov != 0, /*maximize=*/false, first_step != 0,
                    gs, fi);
  })
}

// Σ_i ‖t_i‖² over a list of tensors (fp32, 0-dim, on the tensors' device), via _foreach_norm.
int deepres_sum_of_squares(at::Tensor** ts, size_t n, at::Tensor** out) {
  DEEPRES_TRY({
    auto norms = at::_foreach_norm(list(ts, n), 2, at::kFloat);
    *out = new at::Tensor(at::stack(norms).square().sum());
  })
}

// ‖member p's rows‖₂ over a pack's tensors, fp32 [members] on their device: every t_i is the
// members' tensors concatenated along dim 0 (member p's the p-th of `members` equal row
// blocks), so its [members, -1] view holds member p's entries in row p (a channels-last weight
// is permuted to its memory order first, so that the view needs no copy). One norm over dim 1
// per tensor, then one over the stacked [n, members]: one launch per tensor, where a square
// and a sum per tensor took two (and no temporary as large as all the gradients, which a
// concatenation would allocate every step: 14 ms a step on a 2-core CPU at ResNet-110 × 10).
int deepres_member_norms(at::Tensor** ts, size_t n, int64_t members, at::Tensor** out) {
  DEEPRES_TRY({
    std::vector<at::Tensor> norms;
    norms.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const at::Tensor& t = *ts[i];
      bool nhwc = t.dim() == 4 && !t.is_contiguous() &&
                  t.is_contiguous(at::MemoryFormat::ChannelsLast);
      auto rows = (nhwc ? t.permute({0, 2, 3, 1}) : t).reshape({members, -1});
      norms.push_back(at::linalg_vector_norm(rows, 2, at::IntArrayRef{1}, false, at::kFloat));
    }
    *out = new at::Tensor(at::linalg_vector_norm(at::stack(norms), 2, at::IntArrayRef{0},
                                                 /*keepdim=*/false, at::kFloat));
  })
}

// Deterministic mode (on != 0) or libtorch's defaults: torch.use_deterministic_algorithms
// (warn_only: an op without a deterministic kernel warns instead of throwing), cuDNN
// deterministic and not benchmarking (off, benchmark != 0 gives deepres' CUDA default).
int deepres_set_deterministic(int on, int benchmark) {
  DEEPRES_TRY({
    auto& ctx = at::globalContext();
    ctx.setDeterministicAlgorithms(on != 0, /*warn_only=*/true);
    ctx.setDeterministicCuDNN(on != 0);
    ctx.setBenchmarkCuDNN(on == 0 && benchmark != 0);
  })
}

// Flush-to-zero and denormals-are-zero on the calling thread's SSE unit, as
// torch.set_flush_denormal: threads created later (libtorch's intra-op pool) inherit it.
// *supported = 0 where the CPU lacks the flags.
int deepres_set_flush_denormal(int on, int* supported) {
  DEEPRES_TRY(*supported = at::globalContext().setFlushDenormal(on != 0) ? 1 : 0)
}

// AMP's unscale: t_i *= inv_scale for every i, and found_inf = 1 if any entry is inf or NaN.
int deepres_unscale(at::Tensor** ts, size_t n, at::Tensor* found_inf, at::Tensor* inv_scale) {
  DEEPRES_TRY(at::_amp_foreach_non_finite_check_and_unscale_(list(ts, n), *found_inf, *inv_scale))
}

// Drops the parameters' gradients (PyTorch's zero_grad(set_to_none=True)): no kernel launch,
// and the next backward writes the gradient instead of adding into zeros.
int deepres_clear_grads(at::Tensor** params, size_t n) {
  DEEPRES_TRY({
    for (size_t i = 0; i < n; ++i) params[i]->mutable_grad().reset();
  })
}

// A copy of t in channels-last (NHWC) memory format (t itself when already so).
int deepres_channels_last(at::Tensor* t, at::Tensor** out) {
  DEEPRES_TRY(*out = new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast)))
}

// The CUDA caching allocator's peak allocated and reserved bytes on a device since the last
// reset (reset != 0 resets the peaks after reading them).
int deepres_cuda_peak_bytes(int device, int reset, long long* allocated, long long* reserved) {
  DEEPRES_TRY({
    auto* alloc = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    auto stats = alloc->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = stats.allocated_bytes[all].peak;
    *reserved = stats.reserved_bytes[all].peak;
    if (reset) alloc->resetPeakStats(static_cast<c10::DeviceIndex>(device));
  })
}

// The default generator of a device (device < 0: the CPU's; else CUDA device `device`).
static at::Generator default_generator(int device) {
  if (device < 0) return at::detail::getDefaultCPUGenerator();
  return at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
}

// A copy of a default generator's state (torch.get_rng_state / torch.cuda.get_rng_state).
int deepres_rng_get_state(int device, at::Tensor** out) {
  DEEPRES_TRY({
    auto gen = default_generator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    *out = new at::Tensor(gen.get_state());
  })
}

// Restores a state from deepres_rng_get_state (torch.set_rng_state).
int deepres_rng_set_state(int device, at::Tensor* state) {
  DEEPRES_TRY({
    auto gen = default_generator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(*state);
  })
}

// libtorch's profiler (Kineto; src/util/profile.rs, `deepres bench --profile`): starts
// recording the CPU's operators and, when cuda != 0, the CUDA kernels (and copies).
int deepres_profile_start(int cuda) {
  DEEPRES_TRY({
    using namespace torch::profiler::impl;
    ProfilerConfig config(ProfilerState::KINETO);
    std::set<ActivityType> activities{ActivityType::CPU};
    if (cuda) activities.insert(ActivityType::CUDA);
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  })
}

// Stops recording. *text receives one line per event name on the CUDA devices (cuda != 0: the
// kernels and copies) or on the CPU (the operators, each with its nested ones' time included):
// "count<TAB>total nanoseconds<TAB>name"; valid until the next call on this thread.
int deepres_profile_stop(int cuda, const char** text) {
  DEEPRES_TRY({
    auto result = torch::autograd::profiler::disableProfiler();
    auto want = cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
    std::map<std::string, std::pair<unsigned long long, unsigned long long>> by_name;
    for (const auto& e : result->events()) {
      if (e.deviceType() != want) continue;
      auto& a = by_name[e.name()];
      a.first += 1;
      a.second += e.durationNs();
    }
    std::ostringstream out;
    for (const auto& [name, a] : by_name) out << a.first << '\t' << a.second << '\t' << name << '\n';
    profile_text = out.str();
    *text = profile_text.c_str();
  })
}

}  // extern "C"
