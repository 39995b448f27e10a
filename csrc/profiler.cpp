// libtorch's profiler (Kineto) behind a C ABI (see src/util/profile.rs): `deepres bench
// --profile` records a few steps and reports where the device's time goes, kernel by kernel.
// Every function returns 0 on success and 1 on a C++ exception, whose message
// deepres_profile_error gives.
#include <torch/csrc/autograd/profiler_kineto.h>

#include <exception>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>

namespace {
thread_local std::string profile_error;
thread_local std::string profile_text;
}  // namespace

extern "C" {

const char* deepres_profile_error() { return profile_error.c_str(); }

// Starts recording the CPU's operators and, when cuda != 0, the CUDA kernels (and copies).
int deepres_profile_start(int cuda) {
  try {
    using namespace torch::profiler::impl;
    ProfilerConfig config(ProfilerState::KINETO);
    std::set<ActivityType> activities{ActivityType::CPU};
    if (cuda) activities.insert(ActivityType::CUDA);
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
    return 0;
  } catch (const std::exception& e) {
    profile_error = e.what();
    return 1;
  }
}

// Stops recording. *text receives one line per event name on the CUDA devices (cuda != 0: the
// kernels and copies) or on the CPU (the operators, each with its nested ones' time included):
// "count<TAB>total nanoseconds<TAB>name"; valid until the next call on this thread.
int deepres_profile_stop(int cuda, const char** text) {
  try {
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
    return 0;
  } catch (const std::exception& e) {
    profile_error = e.what();
    return 1;
  }
}

}  // extern "C"
