//! CUDA streams for models stepped side by side in one process (`deepres bench --pack N
//! --streams`, [`super::bench_streams`]): each model's work is queued on a stream of its own
//! ([`CudaStream::run`]), so that the GPU runs the small kernels of several models at once
//! where one stream would run them one after another. With CUDA graphs
//! ([`super::graph::Stepper`]) each model's step is one graph launch on its stream.
use anyhow::Result;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use tch::Device;

use super::graph::graph_error;

extern "C" {
    fn deepres_stream_new(device: c_int) -> *mut c_void;
    fn deepres_stream_free(s: *mut c_void);
    fn deepres_stream_enter(s: *mut c_void, prev: *mut *mut c_void) -> c_int;
    fn deepres_stream_exit(prev: *mut c_void) -> c_int;
    fn deepres_stream_wait(waiter: *mut c_void, on: *mut c_void) -> c_int;
}

/// A CUDA stream of libtorch's pool on one device.
pub struct CudaStream(*mut c_void);

impl Drop for CudaStream {
    fn drop(&mut self) {
        unsafe { deepres_stream_free(self.0) }
    }
}

impl CudaStream {
    /// A stream on `device` (CUDA only; the build must have CUDA graphs' shim).
    pub fn new(device: Device) -> Result<CudaStream> {
        let Device::Cuda(i) = device else {
            anyhow::bail!("CUDA streams need a CUDA device, the device is {device:?}");
        };
        let s = unsafe { deepres_stream_new(i as c_int) };
        if s.is_null() {
            return Err(graph_error("CUDA stream"));
        }
        Ok(CudaStream(s))
    }

    /// Runs `f` with this stream current: the CUDA work `f` queues goes to it. The previous
    /// stream is current again afterwards, also when `f` panics.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let mut prev: *mut c_void = std::ptr::null_mut();
        if unsafe { deepres_stream_enter(self.0, &mut prev) } != 0 {
            return Err(graph_error("entering a CUDA stream"));
        }
        let out = catch_unwind(AssertUnwindSafe(f));
        let left = unsafe { deepres_stream_exit(prev) };
        let out = out.unwrap_or_else(|p| resume_unwind(p));
        if left != 0 {
            return Err(graph_error("leaving a CUDA stream"));
        }
        Ok(out)
    }

    /// This stream's later work waits for what is queued so far on the device's current
    /// stream (an event; the host does not wait).
    pub fn wait_for_current(&self) -> Result<()> {
        if unsafe { deepres_stream_wait(self.0, std::ptr::null_mut()) } != 0 {
            return Err(graph_error("a CUDA stream waiting"));
        }
        Ok(())
    }

    /// The device's current stream's later work waits for what is queued so far on this one.
    pub fn join_current(&self) -> Result<()> {
        // The current stream as a waiter: entered, it is this stream's predecessor.
        let mut prev: *mut c_void = std::ptr::null_mut();
        if unsafe { deepres_stream_enter(self.0, &mut prev) } != 0 {
            return Err(graph_error("entering a CUDA stream"));
        }
        let waited = unsafe { deepres_stream_wait(prev, self.0) };
        let left = unsafe { deepres_stream_exit(prev) };
        if waited != 0 || left != 0 {
            return Err(graph_error("joining a CUDA stream"));
        }
        Ok(())
    }
}
