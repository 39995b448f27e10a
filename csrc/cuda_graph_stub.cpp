// Stand-in for cuda_graph.cpp when deepres is built without the CUDA runtime headers (or
// against a CPU-only libtorch): the same C ABI, every call failing with the reason.
#include <cstddef>

namespace {
const char* kWhy =
    "CUDA graphs are not compiled in: build.rs found no CUDA runtime headers (run `make setup`, "
    "which installs nvidia-cuda-crt into the torch venv, or set DEEPRES_CUDA_INCLUDE), or "
    "libtorch has no CUDA";
}

extern "C" {
const char* deepres_graph_last_error() { return kWhy; }
int deepres_graph_available() { return 0; }
void* deepres_graph_new() { return nullptr; }
void deepres_graph_free(void*) {}
int deepres_graph_capture_begin(void*, int) { return 1; }
int deepres_graph_capture_end(void*) { return 1; }
int deepres_graph_replay(void*) { return 1; }
void* deepres_stream_new(int) { return nullptr; }
void deepres_stream_free(void*) {}
int deepres_stream_enter(void*, void**) { return 1; }
int deepres_stream_exit(void*) { return 1; }
int deepres_stream_wait(void*, void*) { return 1; }
}
