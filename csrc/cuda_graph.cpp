// CUDA graphs of libtorch (at::cuda::CUDAGraph) behind a C ABI (see src/train/graph.rs):
// a whole training step is captured once and replayed per batch, so the host launches one
// graph instead of a few thousand small kernels. Compiled by build.rs when the CUDA runtime
// headers are found (pip's nvidia-cuda-runtime + nvidia-cuda-crt); otherwise
// cuda_graph_stub.cpp provides the same functions, failing with a clear message.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <exception>
#include <mutex>
#include <optional>
#include <string>

namespace {
thread_local std::string graph_error;

struct Graph {
  at::cuda::CUDAGraph graph;
  std::optional<c10::cuda::CUDAStreamGuard> side_stream;
  bool autocast_cache = true;
  c10::DeviceIndex device = 0;
};

// A capture that fails at its end leaves the device's default CUDA generator in capture mode
// (libtorch's capture_end throws before its generator epilogue), and every later random draw
// on the device fails ("Offset increment outside graph capture encountered unexpectedly").
// The generator gets a fresh state with the same seed and offset: the draws recorded in the
// failed capture never ran, so the sequence goes on as if the capture had not been tried.
void release_generator(c10::DeviceIndex device) {
  auto gen = at::cuda::detail::getDefaultCUDAGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  auto* impl = at::check_generator<at::CUDAGeneratorImpl>(gen);
  auto fresh = at::cuda::detail::createCUDAGenerator(device);
  auto* f = at::check_generator<at::CUDAGeneratorImpl>(fresh);
  f->set_current_seed(impl->current_seed());
  f->set_philox_offset_per_thread(impl->philox_offset_per_thread());
  impl->graphsafe_set_state(fresh.getIntrusivePtr());
}
}  // namespace

#define GRAPH_TRY(...)                \
  try {                               \
    __VA_ARGS__;                      \
    return 0;                         \
  } catch (const std::exception& e) { \
    graph_error = e.what();           \
    return 1;                         \
  }

extern "C" {

const char* deepres_graph_last_error() { return graph_error.c_str(); }

int deepres_graph_available() { return 1; }

void* deepres_graph_new() {
  try {
    return new Graph();
  } catch (const std::exception& e) {
    graph_error = e.what();
    return nullptr;
  }
}

void deepres_graph_free(void* g) { delete static_cast<Graph*>(g); }

// Starts capturing on a side stream of `device` (capture cannot use the default stream), after
// the device has finished all earlier work; autocast's weight-cast cache is off meanwhile
// (as torch.cuda.graph does).
int deepres_graph_capture_begin(void* g, int device) {
  GRAPH_TRY({
    auto* gr = static_cast<Graph*>(g);
    c10::cuda::device_synchronize();
    gr->side_stream.emplace(c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device)));
    gr->device = static_cast<c10::DeviceIndex>(device);
    gr->autocast_cache = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);
    gr->graph.capture_begin();
  })
}

// Ends the capture and returns to the previous stream; a failed capture also releases the
// device's generator from capture mode.
int deepres_graph_capture_end(void* g) {
  auto* gr = static_cast<Graph*>(g);
  try {
    gr->graph.capture_end();
  } catch (const std::exception& e) {
    graph_error = e.what();
    at::autocast::set_autocast_cache_enabled(gr->autocast_cache);
    gr->side_stream.reset();
    try {
      release_generator(gr->device);
    } catch (const std::exception& e2) {
      graph_error += std::string("; and releasing the CUDA generator: ") + e2.what();
    }
    return 1;
  }
  at::autocast::set_autocast_cache_enabled(gr->autocast_cache);
  gr->side_stream.reset();
  GRAPH_TRY(c10::cuda::device_synchronize())
}

// Launches the captured work on the current stream.
int deepres_graph_replay(void* g) { GRAPH_TRY(static_cast<Graph*>(g)->graph.replay()) }

// CUDA streams of libtorch's pool, for models stepped side by side (src/train/streams.rs):
// a stream, made current around one model's work, then joined.
void* deepres_stream_new(int device) {
  try {
    return new c10::cuda::CUDAStream(
        c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device)));
  } catch (const std::exception& e) {
    graph_error = e.what();
    return nullptr;
  }
}

void deepres_stream_free(void* s) { delete static_cast<c10::cuda::CUDAStream*>(s); }

// Makes `s` its device's current stream; *prev receives the one it replaces, for
// deepres_stream_exit.
int deepres_stream_enter(void* s, void** prev) {
  GRAPH_TRY({
    auto* st = static_cast<c10::cuda::CUDAStream*>(s);
    *prev = new c10::cuda::CUDAStream(c10::cuda::getCurrentCUDAStream(st->device_index()));
    c10::cuda::setCurrentCUDAStream(*st);
  })
}

// Makes `prev` (from deepres_stream_enter) current again, and frees it.
int deepres_stream_exit(void* prev) {
  auto* p = static_cast<c10::cuda::CUDAStream*>(prev);
  int rc = 0;
  try {
    c10::cuda::setCurrentCUDAStream(*p);
  } catch (const std::exception& e) {
    graph_error = e.what();
    rc = 1;
  }
  delete p;
  return rc;
}

// `waiter`'s later work waits for the work queued so far on `on` (null: the device's current
// stream), through an event: no host sync.
int deepres_stream_wait(void* waiter, void* on) {
  GRAPH_TRY({
    auto* w = static_cast<c10::cuda::CUDAStream*>(waiter);
    c10::cuda::CUDAGuard device(w->device_index());
    auto source = on ? *static_cast<c10::cuda::CUDAStream*>(on)
                     : c10::cuda::getCurrentCUDAStream(w->device_index());
    // (the CUDA runtime's calls: ATen's CUDAEvent header needs CUDA headers the wheels lack)
    cudaEvent_t event;
    C10_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    cudaError_t recorded = cudaEventRecord(event, source.stream());
    cudaError_t waited =
        recorded == cudaSuccess ? cudaStreamWaitEvent(w->stream(), event, 0) : recorded;
    C10_CUDA_CHECK(cudaEventDestroy(event));  // released once the wait is satisfied
    C10_CUDA_CHECK(waited);
  })
}

}  // extern "C"
