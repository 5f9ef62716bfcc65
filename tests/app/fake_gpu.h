// A pretend GPU for the app tests: EngineWorker sessions built for DeviceKind::cuda really compute
// on the CPU, and the faults a GPU raises (out of memory, a sticky device error) are thrown where
// the session would throw them: when the session is built, or before a block. So the failure
// paths run on machines without a GPU, and a "GPU" run gives exactly the CPU's frames.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "engine_worker.h"
#include "strand/error.h"
#include "strand/session.h"

namespace strand::desktop::test {

struct FakeGpu {
  std::atomic<qint64> out_of_memory_at_block{-1};  // before this block, on the GPU
  std::atomic<qint64> device_error_at_block{-1};   // before this block, on the GPU
  std::atomic<bool> out_of_memory_on_create{false};
  std::mutex mutex;
  std::vector<strand::DeviceKind> sessions_built;  // device of every session the worker built

  std::vector<strand::DeviceKind> built() {
    std::lock_guard lock(mutex);
    return sessions_built;
  }

  // A hand on the engine thread: the next time block `block` is about to be generated (on any
  // device), the engine waits there until release(), so a test can act mid-generation.
  void holdAt(qint64 block) {
    std::lock_guard lock(gate_mutex);
    hold_at = block;
    open = false;
  }
  bool waitUntilHeld(qint64 block, int timeout_ms) {
    std::unique_lock lock(gate_mutex);
    return gate.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                         [&] { return held == block; });
  }
  void release() {
    std::lock_guard lock(gate_mutex);
    open = true;
    held = -1;
    gate.notify_all();
  }
  void holdIfAsked(qint64 block) {  // engine thread
    std::unique_lock lock(gate_mutex);
    if (block != hold_at) return;
    hold_at = -1;
    held = block;
    gate.notify_all();
    gate.wait(lock, [&] { return open; });
  }

 private:
  std::mutex gate_mutex;
  std::condition_variable gate;
  qint64 hold_at = -1;
  qint64 held = -1;
  bool open = true;
};

inline EngineDevice fakeGpuDevice() {
  EngineDevice device;
  device.kind = strand::DeviceKind::cuda;
  device.index = 0;
  device.precision = strand::ComputePrecision::bf16;
  device.name = QStringLiteral("Fake GPU");
  return device;
}

// Worker options whose sessions start on the fake GPU (`start_on_gpu`) or the CPU.
inline EngineWorkerOptions fakeGpuOptions(const std::shared_ptr<FakeGpu>& gpu,
                                          bool start_on_gpu = true) {
  EngineWorkerOptions options;
  options.device = start_on_gpu ? fakeGpuDevice() : cpuEngineDevice();
  options.session_factory = [gpu](std::shared_ptr<const strand::Model> model,
                                  const strand::SessionOptions& requested) {
    {
      std::lock_guard lock(gpu->mutex);
      gpu->sessions_built.push_back(requested.device);
    }
    if (requested.device == strand::DeviceKind::cuda && gpu->out_of_memory_on_create) {
      throw strand::Error(strand::ErrorKind::out_of_memory,
                          "fake GPU: cudaMalloc failed (weights)");
    }
    strand::SessionOptions on_cpu = requested;
    on_cpu.device = strand::DeviceKind::cpu;
    on_cpu.device_index = 0;
    on_cpu.precision = strand::ComputePrecision::fp32;
    return std::make_shared<strand::Session>(std::move(model), on_cpu);
  };
  options.before_block = [gpu](const strand::SessionOptions& session, qint64 block) {
    gpu->holdIfAsked(block);
    if (session.device != strand::DeviceKind::cuda) return;
    if (block == gpu->out_of_memory_at_block) {
      throw strand::Error(strand::ErrorKind::out_of_memory,
                          "fake GPU: out of memory (activations)");
    }
    if (block == gpu->device_error_at_block) {
      throw strand::Error(strand::ErrorKind::device, "fake GPU: an illegal memory access (sticky)");
    }
  };
  return options;
}

}  // namespace strand::desktop::test
